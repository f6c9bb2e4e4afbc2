"""``/services``: the APIs and brokers the hub delivers to (credentials never shown; a new
signing secret is shown once, in the response of the write that made it)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import ValidationError
from temporalio.service import RPCError

from hub.api.deps import StateDep, StoreDep, sync_index
from hub.api.errors import invalid_patch
from hub.api.examples import EXAMPLES
from hub.api.schemas import (
    RotateIn,
    ServiceDetail,
    ServiceNamePath,
    ServiceOut,
    ServiceResumed,
    ServiceSaved,
    problems,
)
from hub.core.control import HoldReason
from hub.core.models import ServiceIn, ServicePatch
from hub.engine.hold_counts import held_counts
from hub.engine.holds import wake_held
from hub.secrets import SecretKeyError

router = APIRouter(prefix="/services", tags=["services"])
log = logging.getLogger(__name__)


@contextmanager
def _sealing() -> Iterator[None]:
    """Writing a token seals it, which needs the secret key: without one it is a 400."""
    try:
        yield
    except SecretKeyError as error:
        raise HTTPException(400, str(error)) from None


@router.get("", response_model=list[ServiceOut])
async def list_services(store: StoreDep) -> list[ServiceOut]:
    """Every service, by name (credentials only as has_token / has_inbound_token)."""
    return [ServiceOut.of(s) for s in await store.services.all()]


# Saving answers with ServiceOut's fields, and signing_secret only when the save made a key
# (the only field left unset otherwise).
@router.post(
    "",
    status_code=201,
    response_model=ServiceSaved,
    response_model_exclude_unset=True,
    responses=problems(400, 409),
)
async def create_service(
    spec: Annotated[ServiceIn, Body(openapi_examples=EXAMPLES["service"])], state: StateDep
) -> ServiceSaved:
    """Add a service; its tokens are stored encrypted (400 if no secret key is configured).

    With ``sign``, its deliveries are signed: the response's ``signing_secret`` is the only
    time the new secret is shown.
    """
    with _sealing():
        service = await state.store.services.create(spec)
    await sync_index(state)
    return ServiceSaved.of(service)


@router.get("/{name}", response_model=ServiceDetail, responses=problems(404))
async def get_service(name: ServiceNamePath, state: StateDep) -> ServiceDetail:
    """One service (credentials only as has_token / has_inbound_token), with how many of its
    deliveries are held, and why (null when Temporal is unreachable)."""
    detail = ServiceDetail.of(await state.store.services.get(name))
    counts = await held_counts(state.temporal, name)
    if counts is not None:
        detail.held = counts.total
        detail.held_by_reason = {HoldReason(r): n for r, n in counts.by_reason.items()}
    return detail


@router.post("/{name}/pause", response_model=ServiceOut, responses=problems(404))
async def pause_service(name: ServiceNamePath, state: StateDep) -> ServiceOut:
    """Hold every delivery to the service: new and in-flight ones wait in their workflows,
    using no attempts, until resumed (or their max_hold, then the DLQ). Pausing a paused
    service changes nothing."""
    service = await state.store.services.set_paused(name, True)
    await sync_index(state)
    return ServiceOut.of(service)


@router.post("/{name}/resume", response_model=ServiceResumed, responses=problems(404))
async def resume_service(name: ServiceNamePath, state: StateDep) -> ServiceResumed:
    """Let the service's deliveries go again, and wake the held ones: they go out at the
    service's rate (or HUB_RELEASE_RATE), not all at once. ``woken`` is null when Temporal is
    unreachable; the resume still holds, and they wake on their own timers."""
    service = await state.store.services.set_paused(name, False)
    await sync_index(state)
    try:
        woken: int | None = await wake_held(state.temporal, name)
    except (RuntimeError, RPCError, OSError) as err:
        log.warning("resume %s: held deliveries not woken now: %s", name, err)
        woken = None
    return ServiceResumed.model_validate(ServiceOut.of(service).model_dump() | {"woken": woken})


@router.patch(
    "/{name}",
    response_model=ServiceSaved,
    response_model_exclude_unset=True,
    responses=problems(400, 404),
)
async def update_service(
    name: ServiceNamePath,
    patch: Annotated[ServicePatch, Body(openapi_examples=EXAMPLES["service_patch"])],
    state: StateDep,
) -> ServiceSaved:
    """Change the given fields; the resulting service is checked as a whole (422).

    A key made by ``sign`` is shown once, as ``signing_secret``.
    """
    try:
        with _sealing():
            service = await state.store.services.update(name, patch)
    except ValidationError as error:
        raise invalid_patch(error) from None
    await sync_index(state)
    return ServiceSaved.of(service)


@router.post(
    "/{name}/rotate-secret", response_model=ServiceSaved, responses=problems(400, 404, 409)
)
async def rotate_secret(
    name: ServiceNamePath, state: StateDep, rotation: Annotated[RotateIn | None, Body()] = None
) -> ServiceSaved:
    """A new signing key, shown once as ``signing_secret``; until ``grace`` seconds have
    passed the old keys sign too (every delivery carries both signatures). 409 if the
    service does not sign."""
    grace = (rotation or RotateIn()).grace
    with _sealing():
        service = await state.store.services.rotate_secret(name, timedelta(seconds=grace))
    await sync_index(state)
    return ServiceSaved.of(service)


@router.delete("/{name}", status_code=204, responses=problems(404, 409))
async def delete_service(
    name: ServiceNamePath,
    state: StateDep,
    with_rules: Annotated[bool, Query(description="Also delete the service's rules.")] = False,
) -> None:
    """Delete a service; 409 while rules use it, unless ``with_rules``."""
    await state.store.services.delete(name, with_rules=with_rules)
    await sync_index(state)
