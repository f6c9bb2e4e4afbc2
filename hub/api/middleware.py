"""What runs before any route: the request-body size limit, and CORS for the codec endpoint."""

from collections.abc import Collection, Mapping

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ENVELOPE_MARGIN = 64 * 1024
"""What a request body may hold besides the event itself (name, id, JSON framing)."""

MAX_BODY_BYTES = 1024 * 1024 + ENVELOPE_MARGIN
"""The default limit: the default HUB_MAX_EVENT_BYTES plus the envelope."""

CODEC_MAX_BODY_BYTES = 8 * 1024 * 1024
"""The codec endpoint's limit: a history event's payloads (Temporal refuses a payload over
2 MB, and base64 adds a third), with room for a few in one request."""


class BodySizeLimit:
    """413 for a request body over its limit: by its Content-Length, and as it streams in.

    The limit is ``max_bytes``, or the one ``larger`` gives for a path prefix. The header is
    checked first so a large upload is refused unread; the count of bytes actually received
    catches bodies that lie about, or omit, their length.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        larger: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    def limit(self, path: str) -> int:
        """The body limit for a request path."""
        for prefix, limit in self.larger.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
                return
            if int(declared) > limit:
                await JSONResponse({"detail": _message(limit)}, 413)(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _message(limit))
            return message

        await self.app(scope, limited, send)


def _message(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


CORS_ALLOW_HEADERS = "authorization, content-type, x-namespace"


class CodecCors:
    """CORS for the paths under ``prefix``, for the listed browser origins only.

    A preflight (OPTIONS with Access-Control-Request-Method) from a listed origin is answered
    here; other requests from one get Access-Control-Allow-Origin on their response. Requests
    from any other origin, and every other path, pass through untouched (no CORS headers, so
    a browser will not let a page read the answer).
    """

    def __init__(self, app: ASGIApp, origins: Collection[str], prefix: str = "/codec/") -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _origin(scope)
        if (
            scope["type"] != "http"
            or origin is None
            or origin not in self.origins
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        cors = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Vary": "Origin",
        }
        preflight = dict(scope["headers"]).get(b"access-control-request-method")
        if scope["method"] == "OPTIONS" and preflight is not None:
            headers = cors | {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Max-Age": "600",
            }
            await Response(status_code=204, headers=headers)(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in cors.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_cors)


def _origin(scope: Scope) -> str | None:
    raw = dict(scope.get("headers", [])).get(b"origin")
    return raw.decode("latin-1") if raw is not None else None


def parse_origins(text: str) -> frozenset[str]:
    """HUB_CODEC_CORS_ORIGINS: origins separated by spaces or commas (a trailing / ignored)."""
    return frozenset(o.rstrip("/") for o in text.replace(",", " ").split())
