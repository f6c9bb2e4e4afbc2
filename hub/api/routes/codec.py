"""``POST /codec/encode`` and ``POST /codec/decode``: Temporal's remote codec protocol.

The hub encrypts every payload it writes into Temporal (``hub.runtime.codec``). This is how
an operator reads them back: the Temporal UI (``--ui-codec-endpoint http://HOST:PORT/codec``,
which ``hub dev`` sets) and ``temporal workflow show --codec-endpoint http://HOST:PORT/codec
--codec-auth 'Bearer <HUB_API_TOKEN>'`` send ``{"payloads": [{"metadata": {k: base64},
"data": base64}]}`` (protobuf JSON of ``temporal.api.common.v1.Payloads``) and get the same
shape back. ``X-Namespace`` is accepted and not needed: one key set serves every namespace.

Access: the API token, like every admin route; or a browser request whose ``Origin`` is one
of HUB_CODEC_CORS_ORIGINS, which also gets the CORS headers (preflight answered by
``hub.api.middleware.CodecCors``). That exception exists because the Temporal UI cannot send
the hub's bearer token. It is a trade-off: the ``Origin`` header is not authentication (any
client that is not a browser can send it), so anyone who can reach the API port and knows a
listed origin can decrypt payloads without the token. List only the origin of a Temporal UI
that is itself protected, on an API reachable only by those who may read it: ``hub dev``
binds both to loopback.
"""

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from hub.api.deps import api_bearer, require_api_token
from hub.api.schemas import problems
from hub.runtime.codec import ENCODING, CodecError, HubCodec

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]

router = APIRouter(prefix="/codec", tags=["codec"])

_PAYLOADS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["payloads"],
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metadata": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "format": "byte"},
                    },
                    "data": {"type": "string", "format": "byte"},
                },
            },
        }
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _PAYLOADS_SCHEMA}},
    }
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": _PAYLOADS_SCHEMA}}},
    **problems(400, 401, 413),
}


async def require_codec_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
) -> None:
    """The API token, unless the request comes from a listed browser origin (see above)."""
    origin = request.headers.get("origin")
    if origin is not None and origin in request.app.state.codec_origins:
        return
    await require_api_token(request, credentials)


@router.post("/encode", responses=_ANSWERS, openapi_extra=_BODY)
async def encode(
    request: Request, _access: Annotated[None, Depends(require_codec_access)]
) -> Response:
    """Encrypt payloads as the hub writes them into Temporal."""
    codec: HubCodec | None = request.app.state.codec
    return await _apply(request, codec.encode if codec else None)


@router.post("/decode", responses=_ANSWERS, openapi_extra=_BODY)
async def decode(
    request: Request, _access: Annotated[None, Depends(require_codec_access)]
) -> Response:
    """Decrypt payloads read from Temporal (others are returned as they are)."""
    codec: HubCodec | None = request.app.state.codec
    return await _apply(request, codec.decode if codec else _no_key)


async def _apply(request: Request, transform: Transform | None) -> Response:
    """Parse the body, transform its payloads (None: unchanged), answer in the same shape."""
    payloads = _parse(await request.body())
    if transform is not None:
        try:
            changed = await transform(payloads.payloads)
        except CodecError as error:
            raise HTTPException(400, str(error)) from None
        payloads = Payloads(payloads=changed)
    body = json_format.MessageToJson(
        payloads, indent=None, always_print_fields_with_no_presence=True
    )
    return Response(body, media_type="application/json")


def _parse(raw: bytes) -> Payloads:
    """The request's Payloads; 400 if it is not their protobuf JSON."""
    try:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return json_format.ParseDict(value, Payloads())
    except (ValueError, RecursionError, json_format.ParseError):
        raise HTTPException(
            400, 'the body must be JSON: {"payloads": [{"metadata": {...}, "data": "<base64>"}]}'
        ) from None


async def _no_key(payloads: Sequence[Payload]) -> list[Payload]:
    """Decoding without a secret key: plain payloads pass, encrypted ones cannot."""
    if any(p.metadata.get("encoding") == ENCODING for p in payloads):
        raise CodecError("payloads are encrypted, and this API has no secret key (HUB_SECRET_KEY)")
    return list(payloads)
