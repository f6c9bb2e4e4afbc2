"""A SERVER span for every API request while tracing is on (hub.runtime.tracing).

An incoming ``traceparent`` is honoured: a producer that traces its own work gets the hub's
spans, and the receiver's request, in its trace. Without one the request span is the trace's
root. Prometheus scrapes and health probes are not traced (a span every few seconds that
says nothing). The span is named by the route's template (``POST /webhooks/{service}``),
never by the raw path, and records no query string and no header but the trace context.
"""

from collections.abc import Collection

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.core.tracing import active_tracer, extract, failed, span

UNTRACED = frozenset({"/metrics", "/healthz"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Span names use these; any other method a client sends is ``_OTHER`` (bounded names)."""


class RequestSpans:
    """ASGI middleware; outermost, so a request refused by another middleware is traced."""

    def __init__(self, app: ASGIApp, untraced: Collection[str] = UNTRACED) -> None:
        self.app = app
        self.untraced = frozenset(untraced)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or active_tracer() is None or scope["path"] in self.untraced:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else "_OTHER"
        headers = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in (b"traceparent", b"tracestate")
        }
        attributes = {"http.request.method": method, "url.scheme": scope.get("scheme", "http")}
        with span(
            method, kind=SpanKind.SERVER, attributes=attributes, context=extract(headers)
        ) as current:
            if current is None:  # tracing was turned off meanwhile
                await self.app(scope, receive, send)
                return

            async def recorded(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    current.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        failed(current, str(status))
                await send(message)

            try:
                await self.app(scope, receive, recorded)
            finally:
                if route := getattr(scope.get("route"), "path", None):
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.route", route)
