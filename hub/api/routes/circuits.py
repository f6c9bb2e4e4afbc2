"""``/circuits``: each service's circuit breaker, and closing one by hand."""

import logging

from fastapi import APIRouter
from temporalio.service import RPCError

from hub.api.deps import StateDep, StoreDep
from hub.api.schemas import ServiceNamePath, problems
from hub.core.control import HoldReason
from hub.core.models import Circuit
from hub.engine.holds import wake_held
from hub.store import NotFoundError

router = APIRouter(prefix="/circuits", tags=["circuits"])
log = logging.getLogger(__name__)


@router.get("", response_model=list[Circuit])
async def list_circuits(store: StoreDep) -> list[Circuit]:
    """Every service's circuit: state, consecutive failures, seconds until a probe."""
    return await store.circuits.all()


@router.post("/{service}/reset", response_model=Circuit, responses=problems(404))
async def reset_circuit(service: ServiceNamePath, state: StateDep) -> Circuit:
    """Close a service's circuit by hand (failures back to 0), and wake the deliveries the
    open circuit held (if Temporal is unreachable, they wake on their own timers)."""
    store = state.store
    await store.circuits.reset(service)
    try:
        await wake_held(state.temporal, service, HoldReason.CIRCUIT_OPEN)
    except (RuntimeError, RPCError, OSError) as err:
        log.warning("circuit reset %s: held deliveries not woken now: %s", service, err)
    for circuit in await store.circuits.all():
        if circuit.service == service:
            return circuit
    raise NotFoundError(f"no service named {service!r}")  # deleted meanwhile
