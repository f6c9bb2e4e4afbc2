"""``/services``: the APIs and brokers the hub delivers to (credentials never shown)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import ValidationError

from hub.api.deps import StateDep, StoreDep, sync_index
from hub.api.errors import invalid_patch
from hub.api.examples import EXAMPLES
from hub.api.schemas import ServiceNamePath, ServiceOut, problems
from hub.core.models import ServiceIn, ServicePatch
from hub.secrets import SecretKeyError

router = APIRouter(prefix="/services", tags=["services"])


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


@router.post("", status_code=201, response_model=ServiceOut, responses=problems(400, 409))
async def create_service(
    spec: Annotated[ServiceIn, Body(openapi_examples=EXAMPLES["service"])], state: StateDep
) -> ServiceOut:
    """Add a service; its tokens are stored encrypted (400 if no secret key is configured)."""
    with _sealing():
        service = await state.store.services.create(spec)
    await sync_index(state)
    return ServiceOut.of(service)


@router.get("/{name}", response_model=ServiceOut, responses=problems(404))
async def get_service(name: ServiceNamePath, store: StoreDep) -> ServiceOut:
    """One service (credentials only as has_token / has_inbound_token)."""
    return ServiceOut.of(await store.services.get(name))


@router.patch("/{name}", response_model=ServiceOut, responses=problems(400, 404))
async def update_service(
    name: ServiceNamePath,
    patch: Annotated[ServicePatch, Body(openapi_examples=EXAMPLES["service_patch"])],
    state: StateDep,
) -> ServiceOut:
    """Change the given fields; the resulting service is checked as a whole (422)."""
    try:
        with _sealing():
            service = await state.store.services.update(name, patch)
    except ValidationError as error:
        raise invalid_patch(error) from None
    await sync_index(state)
    return ServiceOut.of(service)


@router.delete("/{name}", status_code=204, responses=problems(404, 409))
async def delete_service(
    name: ServiceNamePath,
    state: StateDep,
    with_rules: Annotated[bool, Query(description="Also delete the service's rules.")] = False,
) -> None:
    """Delete a service; 409 while rules use it, unless ``with_rules``."""
    await state.store.services.delete(name, with_rules=with_rules)
    await sync_index(state)
