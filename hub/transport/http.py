"""HTTP delivery: the request for one attempt, and what its response means for a retry.

A response is streamed: at most ``max_bytes`` of its body (HUB_RESPONSE_MAX_BYTES) are read,
then the connection is closed, and the service timeout bounds the whole attempt (connect,
send, headers and body). The client's connections go through the egress guard
(``hub.transport.egress.GuardedTransport``); a refusal fails the attempt for good.
"""

import asyncio
import contextlib
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
from opentelemetry.trace import SpanKind

from hub import __version__
from hub.core.egress import EgressRefused
from hub.core.models import EXCERPT_CHARS, AuthType, Delivery, HttpMethod, Service, mask_url
from hub.core.signing import signature_headers
from hub.core.tracing import active_tracer, inject, span
from hub.secrets import Credentials
from hub.transport.base import Sent
from hub.transport.spans import http_attributes, record

RETRYABLE_STATUS = frozenset({408, 429})
MAX_RETRY_AFTER = timedelta(hours=1)
DEFAULT_MAX_BYTES = 64 * 1024
COMPRESSED = frozenset({"gzip", "x-gzip", "deflate"})


class NoCookies(CookieJar):
    """The delivery client's cookie jar, which keeps nothing: a receiver's Set-Cookie must
    not ride on later deliveries (to it, or to another service on the same host)."""

    def set_cookie(self, cookie: Cookie) -> None:
        return

    def extract_cookies(self, response: Any, request: Any) -> None:
        return


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
        # Signed over the body sent, which is empty: the payload is the query string.
        headers |= signature_headers(credentials.signers, delivery.id, b"")
        return client.build_request("GET", url, params=params, headers=headers, timeout=timeout)
    if delivery.method is HttpMethod.DELETE:
        headers |= signature_headers(credentials.signers, delivery.id, b"")
        return client.build_request("DELETE", url, headers=headers, timeout=timeout)
    body = delivery.payload.encode()
    headers["Content-Type"] = "application/json"
    headers |= signature_headers(credentials.signers, delivery.id, body)
    return client.build_request(
        delivery.method.value, url, content=body, headers=headers, timeout=timeout
    )


class HttpTransport:
    """Sends over the worker's one shared httpx client."""

    def __init__(self, client: httpx.AsyncClient, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._client = client
        self._max_bytes = max_bytes

    def method(self, delivery: Delivery) -> str:
        return delivery.method.value

    def prepare(
        self, delivery: Delivery, service: Service, credentials: Credentials, attempt: int
    ) -> "HttpCall":
        request = build_request(self._client, service, delivery, attempt, credentials)
        # Only an excerpt is kept: ask for the body as it is, so the cap counts what is read.
        request.headers["Accept-Encoding"] = "identity"
        return HttpCall(self._client, request, service.timeout, self._max_bytes)


@dataclass(frozen=True)
class HttpCall:
    """One request, ready to send."""

    client: httpx.AsyncClient
    request: httpx.Request
    timeout: float
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def target(self) -> str:
        return mask_url(str(self.request.url))

    async def send(self) -> Sent:
        """Send, in a CLIENT span (while tracing is on) whose context goes with the request
        as ``traceparent``/``tracestate``: the receiver can continue the trace."""
        request = self.request
        if active_tracer() is None:
            return await self._send()
        with span(
            request.method, kind=SpanKind.CLIENT, attributes=http_attributes(request)
        ) as current:
            inject(request.headers)
            sent = await self._send()
            record(current, sent)
            return sent

    async def _send(self) -> Sent:
        request = self.request
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange()
        except TimeoutError:
            return Sent(healthy=False, error=f"timed out after {self.timeout:g}s")
        except EgressRefused as err:
            # Nothing was sent and the service is not at fault: no retry, breaker untouched.
            return Sent(retryable=False, error=str(err))
        except httpx.TimeoutException as err:
            return Sent(
                healthy=False,
                error=f"timed out after {self.timeout:g}s ({type(err).__name__})",
            )
        except httpx.HTTPError as err:
            where = f"{request.url.scheme}://{request.url.host}:{request.url.port or ''}"
            message = f"{type(err).__name__} ({where.rstrip(':')}): {err or 'connection failed'}"
            return Sent(healthy=False, error=message)

    async def _exchange(self) -> Sent:
        response = await self.client.send(self.request, stream=True)
        try:
            body = await read_at_most(response, self.max_bytes)
        finally:
            await response.aclose()
        return classify(response, body_text(response, body))


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """The first ``limit`` bytes of a streamed body, as sent; the rest is never read."""
    body = bytearray()
    if limit > 0:
        async for chunk in response.aiter_raw():
            body += chunk[: limit - len(body)]
            if len(body) >= limit:
                break
    return bytes(body)


def body_text(response: httpx.Response, body: bytes) -> str:
    """What was read of a body, as text for the log (a compressed one inflated, bounded)."""
    if response.headers.get("Content-Encoding", "").strip().lower() in COMPRESSED:
        with contextlib.suppress(zlib.error):
            body = zlib.decompressobj(32 + zlib.MAX_WBITS).decompress(body, 4 * EXCERPT_CHARS)
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def classify(response: httpx.Response, text: str) -> Sent:
    """What a response means (from its status, headers and the start of its body):
    delivered, worth a retry (and when), or refused for good."""
    sent = Sent(status_code=response.status_code, excerpt=text[:EXCERPT_CHARS] or None)
    if response.is_success:
        return sent
    status = response.status_code
    sent.error = f"HTTP {status} {response.reason_phrase}".rstrip()
    if excerpt := text[:200]:
        sent.error += f": {excerpt}"
    if status in RETRYABLE_STATUS or status >= 500:
        sent.healthy = False
        sent.retry_after = retry_after(response.headers.get("Retry-After"))
    else:
        sent.retryable = False
    return sent
