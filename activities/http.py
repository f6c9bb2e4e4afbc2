"""HTTP delivery: one attempt per activity execution; Temporal's retry policy does the rest."""

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio import activity

from activities.attempts import EXCERPT_CHARS, DeliveryAttempts, DeliveryError, delivery_error
from hub import __version__
from hub.models import (
    AttemptResult,
    AuthType,
    Delivery,
    HttpMethod,
    Service,
    mask_url,
)
from hub.secrets import SecretBox, SecretKeyError

RETRYABLE_STATUS = frozenset({408, 429})
MAX_RETRY_AFTER = timedelta(hours=1)


def join_url(base_url: str, endpoint: str) -> str:
    """base_url + endpoint with exactly one slash between them."""
    if not endpoint:
        return base_url
    return f"{base_url.rstrip('/')}/{endpoint.lstrip('/')}"


def query_params(payload: Any) -> dict[str, str]:
    """A JSON object as query parameters: scalars as text, nested values as JSON."""
    if not isinstance(payload, dict):
        raise ValueError("a GET payload must render to a JSON object (it becomes the query string)")
    params = {}
    for key, value in payload.items():
        if isinstance(value, str):
            params[key] = value
        elif value is None:
            params[key] = ""
        else:
            params[key] = json.dumps(value, separators=(",", ":"))
    return params


def retry_after(header: str | None, now: datetime | None = None) -> timedelta | None:
    """The delay a Retry-After header asks for (seconds or an HTTP date), capped at an hour."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        delay = timedelta(seconds=int(header))
    else:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(when - (now or datetime.now(UTC)), timedelta(0))
    return min(delay, MAX_RETRY_AFTER)


def auth_headers(service: Service, token: str) -> dict[str, str]:
    if service.auth_type is AuthType.BEARER:
        return {"Authorization": f"Bearer {token}"}
    if service.auth_type is AuthType.APIKEY:
        return {"X-API-Key": token}
    return {}


def build_request(
    client: httpx.AsyncClient, service: Service, delivery: Delivery, attempt: int, token: str = ""
) -> httpx.Request:
    """The request for one attempt; raises ValueError when the delivery cannot be sent.

    ``token`` is the service's decrypted token (the Service carries it encrypted).
    """
    url = join_url(service.base_url, delivery.endpoint)
    timeout = httpx.Timeout(service.timeout)
    headers = {
        "User-Agent": f"temporal-hub/{__version__}",
        "Idempotency-Key": delivery.id,
        "X-Hub-Event": delivery.event_name,
        "X-Hub-Event-Id": delivery.event_id,
        "X-Hub-Attempt": str(attempt),
        **auth_headers(service, token),
    }
    if delivery.payload is None:
        raise ValueError("the delivery has no payload")
    if delivery.method is HttpMethod.GET:
        params = query_params(json.loads(delivery.payload))
        return client.build_request("GET", url, params=params, headers=headers, timeout=timeout)
    if delivery.method is HttpMethod.DELETE:
        return client.build_request("DELETE", url, headers=headers, timeout=timeout)
    headers["Content-Type"] = "application/json"
    return client.build_request(
        delivery.method.value,
        url,
        content=delivery.payload.encode(),
        headers=headers,
        timeout=timeout,
    )


class HttpActivities:
    """Sends deliveries over the worker's one shared httpx client."""

    def __init__(
        self, attempts: DeliveryAttempts, client: httpx.AsyncClient, box: SecretBox
    ) -> None:
        self._attempts = attempts
        self._client = client
        self._box = box

    @activity.defn(name="deliver_http")
    async def deliver(self, delivery: Delivery) -> AttemptResult:
        """Make one attempt and log it; raise a retryable or non-retryable DeliveryError."""
        log, service = await self._attempts.begin(delivery, delivery.method.value)
        attempt = log.attempt or 1
        try:
            token = self._box.open(service.token) if service.token else ""
            if service.secret_url:  # the URL carries a password, stored encrypted
                service = service.model_copy(
                    update={"base_url": self._box.open(service.secret_url)}
                )
            request = build_request(self._client, service, delivery, attempt, token)
        except (ValueError, SecretKeyError) as err:
            raise await self._attempts.reject(log, str(err), retryable=False) from None
        log.target = mask_url(str(request.url))
        permit = await self._attempts.admit(log, service)

        started = time.perf_counter()
        error: DeliveryError | None = None
        healthy = False
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException as err:
            message = f"timed out after {service.timeout:g}s ({type(err).__name__})"
            error = delivery_error(message, attempt, retryable=True)
        except httpx.HTTPError as err:
            where = f"{request.url.scheme}://{request.url.host}:{request.url.port or ''}"
            message = f"{type(err).__name__} ({where.rstrip(':')}): {err or 'connection failed'}"
            error = delivery_error(message, attempt, retryable=True)
        else:
            log.status_code = response.status_code
            log.response_excerpt = response.text[:EXCERPT_CHARS] or None
            healthy, error = classify(response, attempt)
        log.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._attempts.finish(log, service, permit, healthy=healthy, error=error)
        return AttemptResult(
            attempt=attempt, status_code=log.status_code, latency_ms=log.latency_ms
        )


def classify(response: httpx.Response, attempt: int) -> tuple[bool, DeliveryError | None]:
    """(whether the service looks healthy, the error to raise or None for success)."""
    if response.is_success:
        return True, None
    status = response.status_code
    message = f"HTTP {status} {response.reason_phrase}".rstrip()
    if excerpt := response.text[:200]:
        message += f": {excerpt}"
    if status in RETRYABLE_STATUS or status >= 500:
        delay = retry_after(response.headers.get("Retry-After"))
        return False, delivery_error(message, attempt, retryable=True, delay=delay)
    return True, delivery_error(message, attempt, retryable=False)
