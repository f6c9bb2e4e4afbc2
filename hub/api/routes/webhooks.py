"""``POST /webhooks/{service}``: a service calls the hub, authenticated by its inbound token,
or signed with its inbound secret (Standard Webhooks).

The webhook is logged inbound and emitted as the event ``webhook.{service}``. A signed one
must carry a timestamp within five minutes of now, and its ``webhook-id`` becomes the event
id, so a redelivery starts nothing new; one that does not verify is answered 401 and logged
as a failed inbound row, and no event is emitted.
"""

import json
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import TypeAdapter, ValidationError

from hub.api.deps import StateDep, inbound_api_key, inbound_bearer, same_secret
from hub.api.routes.events import accepted
from hub.api.schemas import EmitOut, emit_responses
from hub.core.models import (
    Direction,
    EventId,
    LogEntryIn,
    LogStatus,
    Service,
    ServiceName,
    check_json_value,
)
from hub.core.signing import ID_HEADER, SIGNATURE_HEADER, SignatureError, verify
from hub.store import NotFoundError, Store

WEBHOOK_EXCERPT_CHARS = 500

_service_name = TypeAdapter(ServiceName)
_event_id = TypeAdapter(EventId)

router = APIRouter(tags=["ingest"])


@router.post(
    "/webhooks/{service}",
    status_code=202,
    response_model=EmitOut,
    responses=emit_responses("No rule matches webhook.{service}.", 400, 401, 403, 404, 413, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_webhook(
    service: Annotated[str, Path(examples=["crm"])],
    request: Request,
    response: Response,
    state: StateDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(inbound_bearer)],
    api_key: Annotated[str | None, Depends(inbound_api_key)],
) -> EmitOut:
    """Receive a webhook for a service: log it inbound and emit ``webhook.{service}``.

    Authenticated by the service's inbound token, as a bearer token or an X-API-Key header;
    or, for a service with an inbound secret, by Standard Webhooks headers (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``): 401 unless they verify.
    """
    verified = await _verified(state.store, service, request)
    if verified is None:
        presented = bearer.credentials if bearer is not None else api_key
        target, event_id = await _authenticated(state.store, service, presented), str(uuid4())
    else:
        target, event_id = verified
    text, data = _json_object(await request.body())
    event_name = f"webhook.{target.name}"
    entry = LogEntryIn(
        direction=Direction.IN,
        service=target.name,
        method="WEBHOOK",
        target=f"/webhooks/{target.name}",
        status=LogStatus.OK,
        response_excerpt=text[:WEBHOOK_EXCERPT_CHARS] or None,
        event_id=event_id,
        event_name=event_name,
    )
    try:
        result = await state.hub.emit(event_name, data, event_id=event_id)
    except Exception as error:
        # The sender will see an error; the log must show the webhook arrived all the same.
        failed = entry.model_copy(
            update={"status": LogStatus.FAILED, "error": f"not emitted: {type(error).__name__}"}
        )
        await state.store.log.add(failed)
        raise
    await state.store.log.add(entry)
    return accepted(result, response, state, source="webhook")


async def _verified(store: Store, name: str, request: Request) -> tuple[Service, str] | None:
    """The service and event id (its webhook-id) of a signed webhook that verifies.

    None when the request carries no signature or the service has no inbound secret: the
    token decides then. A signature that does not verify is logged and answered 401.
    """
    if SIGNATURE_HEADER not in request.headers:
        return None
    target = await _webhook_service(store, name)
    key = store.box.inbound_secret(target)
    if key is None:
        return None
    try:
        msg_id = verify(key, request.headers, await request.body())
    except SignatureError as error:
        reason = f"signature refused: {error}"
        await store.log.add(
            LogEntryIn(
                direction=Direction.IN,
                service=target.name,
                method="WEBHOOK",
                target=f"/webhooks/{target.name}",
                status=LogStatus.FAILED,
                error=reason,
            )
        )
        raise HTTPException(401, reason) from None
    if not target.enabled:
        raise HTTPException(403, f"service {target.name!r} is disabled")
    try:
        return target, _event_id.validate_python(msg_id)
    except ValidationError:
        raise HTTPException(400, f"the {ID_HEADER} header cannot be an event id") from None


async def _authenticated(store: Store, name: str, presented: str | None) -> Service:
    """The enabled service whose inbound token was presented: 401, 404 or 403 otherwise."""
    if not presented:
        raise HTTPException(
            401,
            "missing credentials: send the service's inbound token as "
            "Authorization: Bearer <token> or X-API-Key: <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = await _webhook_service(store, name)
    expected = store.box.inbound_token(target)
    if expected is None:
        raise HTTPException(
            403, f"service {target.name!r} has no inbound token: it takes no webhooks"
        )
    if not same_secret(presented, expected):
        raise HTTPException(403, "wrong inbound token")
    if not target.enabled:
        raise HTTPException(403, f"service {target.name!r} is disabled")
    return target


async def _webhook_service(store: Store, name: str) -> Service:
    """The named service, or 404 (a name that cannot exist is not looked up)."""
    try:
        return await store.services.get(_service_name.validate_python(name))
    except (ValidationError, NotFoundError):
        raise HTTPException(404, f"no service named {name!r}") from None


def _json_object(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The body as text and as a JSON object the hub can carry; 400 otherwise."""
    try:
        text = raw.decode()
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the body must be a JSON object (UTF-8)") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    try:
        check_json_value(value)
    except ValueError as error:
        raise HTTPException(400, f"the body cannot be carried: {error}") from None
    return text, value
