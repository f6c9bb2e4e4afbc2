"""HTTP delivery: one attempt per activity execution; Temporal's retry policy does the rest."""

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from hub import __version__
from hub.models import (
    AttemptResult,
    AuthType,
    Delivery,
    HttpMethod,
    LogEntryIn,
    LogStatus,
    Service,
    mask_url,
)
from hub.rule_index import RuleIndex
from hub.store import Store

RETRYABLE_STATUS = frozenset({408, 429})
MAX_RETRY_AFTER = timedelta(hours=1)
EXCERPT_CHARS = 500


class DeliveryError(ApplicationError):
    """A failed attempt. ``details[0]`` is the attempt number, for the compensation step."""


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


def auth_headers(service: Service) -> dict[str, str]:
    token = service.token.get_secret_value() if service.token else ""
    if service.auth_type is AuthType.BEARER:
        return {"Authorization": f"Bearer {token}"}
    if service.auth_type is AuthType.APIKEY:
        return {"X-API-Key": token}
    return {}


def build_request(
    client: httpx.AsyncClient, service: Service, delivery: Delivery, attempt: int
) -> httpx.Request:
    """The request for one attempt; raises ValueError when the delivery cannot be sent."""
    url = join_url(service.base_url, delivery.endpoint)
    timeout = httpx.Timeout(service.timeout)
    headers = {
        "User-Agent": f"temporal-hub/{__version__}",
        "Idempotency-Key": delivery.id,
        "X-Hub-Event": delivery.event_name,
        "X-Hub-Event-Id": delivery.event_id,
        "X-Hub-Attempt": str(attempt),
        **auth_headers(service),
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
    """Sends deliveries over one shared httpx client; one instance per worker."""

    def __init__(self, store: Store, index: RuleIndex, client: httpx.AsyncClient) -> None:
        self._store = store
        self._index = index
        self._client = client

    @activity.defn(name="deliver_http")
    async def deliver(self, delivery: Delivery) -> AttemptResult:
        """Make one attempt and log it; raise a retryable or non-retryable DeliveryError."""
        info = activity.info()
        attempt = info.attempt
        log = LogEntryIn(
            service=delivery.service,
            rule_id=delivery.rule_id,
            event_id=delivery.event_id,
            event_name=delivery.event_name,
            delivery_id=delivery.id,
            workflow_id=info.workflow_id,
            method=delivery.method.value,
            target=delivery.endpoint,
            status=LogStatus.FAILED,
            attempt=attempt,
        )
        service = await self._index.service(delivery.service_id)
        if service is None:
            raise await self._fail(
                log, f"service {delivery.service!r} is disabled or was deleted", retryable=False
            )
        try:
            request = build_request(self._client, service, delivery, attempt)
        except ValueError as err:
            raise await self._fail(log, str(err), retryable=False) from None
        log.target = mask_url(str(request.url))

        started = time.perf_counter()
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException as err:
            log.latency_ms = _ms_since(started)
            raise await self._fail(
                log, f"timed out after {service.timeout:g}s ({type(err).__name__})", retryable=True
            ) from None
        except httpx.HTTPError as err:
            log.latency_ms = _ms_since(started)
            raise await self._fail(
                log, f"{type(err).__name__}: {err or 'connection failed'}", retryable=True
            ) from None
        log.latency_ms = _ms_since(started)
        log.status_code = response.status_code
        log.response_excerpt = response.text[:EXCERPT_CHARS] or None

        if response.is_success:
            log.status = LogStatus.OK
            await self._record(log)
            return AttemptResult(
                attempt=attempt, status_code=response.status_code, latency_ms=log.latency_ms
            )
        status = response.status_code
        message = f"HTTP {status} {response.reason_phrase}".rstrip()
        if log.response_excerpt:
            message += f": {log.response_excerpt[:200]}"
        if status in RETRYABLE_STATUS or status >= 500:
            delay = retry_after(response.headers.get("Retry-After"))
            raise await self._fail(log, message, retryable=True, delay=delay)
        raise await self._fail(log, message, retryable=False)

    async def _fail(
        self,
        log: LogEntryIn,
        message: str,
        *,
        retryable: bool,
        delay: timedelta | None = None,
    ) -> DeliveryError:
        """Log the failed attempt and build the error Temporal will see."""
        log.error = message
        await self._record(log)
        return DeliveryError(
            message,
            log.attempt,
            type="DeliveryRetryable" if retryable else "DeliveryRejected",
            non_retryable=not retryable,
            next_retry_delay=delay,
        )

    async def _record(self, log: LogEntryIn) -> None:
        """Write the attempt's log row; a logging failure must not cause a second send."""
        try:
            await self._store.add_log(log)
        except Exception:
            activity.logger.exception(
                "could not write the delivery log row for %s", log.delivery_id
            )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
