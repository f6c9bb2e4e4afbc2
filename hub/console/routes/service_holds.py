"""Pausing and resuming a service from the console, as ``hub service pause|resume`` do.

A pause holds the service's deliveries in their workflows (no attempts, no DLQ rows); a
resume lets them go and wakes the held ones, which then leave at the release rate. When
Temporal is unreachable the resume still holds: the held deliveries wake on their timers.
"""

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from temporalio.service import RPCError

from hub.console.auth import WriterDep
from hub.console.rendering import PageError
from hub.console.routes.services import done, hub_state, sync_index
from hub.console.session import Session
from hub.engine.holds import wake_held
from hub.store import NotFoundError

router = APIRouter()
log = logging.getLogger(__name__)


async def _set_paused(request: Request, name: str, session: Session, paused: bool) -> None:
    state = hub_state(request)
    try:
        await state.store.services.set_paused(name, paused)
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    await sync_index(state)


@router.post("/services/{name}/pause")
async def pause_service(request: Request, name: str, session: WriterDep) -> Response:
    """Hold every delivery to the service until it is resumed."""
    await _set_paused(request, name, session, True)
    return done(saved=name)


@router.post("/services/{name}/resume")
async def resume_service(request: Request, name: str, session: WriterDep) -> Response:
    """Let the service's deliveries go again, and wake the held ones."""
    await _set_paused(request, name, session, False)
    try:
        await wake_held(hub_state(request).temporal, name)
    except (RuntimeError, RPCError, OSError) as err:
        log.warning("resume %s: held deliveries not woken now: %s", name, err)
    return done(saved=name)
