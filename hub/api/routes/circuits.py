"""``/circuits``: each service's circuit breaker, and closing one by hand."""

from fastapi import APIRouter

from hub.api.deps import StoreDep
from hub.api.schemas import ServiceNamePath, problems
from hub.core.models import Circuit
from hub.store import NotFoundError

router = APIRouter(prefix="/circuits", tags=["circuits"])


@router.get("", response_model=list[Circuit])
async def list_circuits(store: StoreDep) -> list[Circuit]:
    """Every service's circuit: state, consecutive failures, seconds until a probe."""
    return await store.circuits.all()


@router.post("/{service}/reset", response_model=Circuit, responses=problems(404))
async def reset_circuit(service: ServiceNamePath, store: StoreDep) -> Circuit:
    """Close a service's circuit by hand (failures back to 0)."""
    await store.circuits.reset(service)
    for circuit in await store.circuits.all():
        if circuit.service == service:
            return circuit
    raise NotFoundError(f"no service named {service!r}")  # deleted meanwhile
