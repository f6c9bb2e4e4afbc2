"""HTTP delivery: the request for one attempt, and what its response means for a retry."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from hub import __version__
from hub.core.models import EXCERPT_CHARS, AuthType, Delivery, HttpMethod, Service, mask_url
from hub.secrets import Credentials
from hub.transport.base import Sent

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
    client: httpx.AsyncClient,
    service: Service,
    delivery: Delivery,
    attempt: int,
    credentials: Credentials,
) -> httpx.Request:
    """The request for one attempt; raises ValueError when the delivery cannot be sent."""
    url = join_url(credentials.url, delivery.endpoint)
    timeout = httpx.Timeout(service.timeout)
    headers = {
        "User-Agent": f"temporal-hub/{__version__}",
        "Idempotency-Key": delivery.id,
        "X-Hub-Event": delivery.event_name,
        "X-Hub-Event-Id": delivery.event_id,
        "X-Hub-Attempt": str(attempt),
        **auth_headers(service, credentials.token),
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


class HttpTransport:
    """Sends over the worker's one shared httpx client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    def method(self, delivery: Delivery) -> str:
        return delivery.method.value

    def prepare(
        self, delivery: Delivery, service: Service, credentials: Credentials, attempt: int
    ) -> "HttpCall":
        request = build_request(self._client, service, delivery, attempt, credentials)
        return HttpCall(self._client, request, service.timeout)


@dataclass(frozen=True)
class HttpCall:
    """One request, ready to send."""

    client: httpx.AsyncClient
    request: httpx.Request
    timeout: float

    @property
    def target(self) -> str:
        return mask_url(str(self.request.url))

    async def send(self) -> Sent:
        request = self.request
        try:
            response = await self.client.send(request)
        except httpx.TimeoutException as err:
            return Sent(
                healthy=False,
                error=f"timed out after {self.timeout:g}s ({type(err).__name__})",
            )
        except httpx.HTTPError as err:
            where = f"{request.url.scheme}://{request.url.host}:{request.url.port or ''}"
            message = f"{type(err).__name__} ({where.rstrip(':')}): {err or 'connection failed'}"
            return Sent(healthy=False, error=message)
        return classify(response)


def classify(response: httpx.Response) -> Sent:
    """What a response means: delivered, worth a retry (and when), or refused for good."""
    sent = Sent(status_code=response.status_code, excerpt=response.text[:EXCERPT_CHARS] or None)
    if response.is_success:
        return sent
    status = response.status_code
    sent.error = f"HTTP {status} {response.reason_phrase}".rstrip()
    if excerpt := response.text[:200]:
        sent.error += f": {excerpt}"
    if status in RETRYABLE_STATUS or status >= 500:
        sent.healthy = False
        sent.retry_after = retry_after(response.headers.get("Retry-After"))
    else:
        sent.retryable = False
    return sent
