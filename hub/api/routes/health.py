"""``/healthz`` (no auth: probes carry no token) and ``/metrics`` (the API token, which
Prometheus sends as ``authorization: {credentials: ...}``, unless HUB_METRICS_PUBLIC=1).

``/metrics`` is this process's registry (events received; under ``hub dev`` the worker's
counters too), the gauges read from the database with indexed queries, and the metrics of the
Temporal runtime its client runs on.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi import APIRouter, Depends, Response

from hub.api.deps import StateDep, require_metrics_access
from hub.api.schemas import Health, problems
from hub.engine.state import HubState
from hub.runtime.metrics import CONTENT_TYPE
from hub.runtime.telemetry import runtime_metrics_url

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = timedelta(seconds=3)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(state: StateDep, response: Response) -> Health:
    """Whether PostgreSQL and Temporal answer (503 naming the one that does not).

    The database counts as up once it answers and the rule index has reconnected to it, so
    a 200 here means POST /events is served again.
    """
    database, temporal = await asyncio.gather(
        _answers("database", lambda: _database_ready(state)),
        _answers(
            "temporal",
            lambda: state.temporal.service_client.check_health(timeout=HEALTH_TIMEOUT),
        ),
    )
    ok = database and temporal
    response.status_code = 200 if ok else 503
    return Health(
        status="ok" if ok else "unavailable",
        database="ok" if database else "unavailable",
        temporal="ok" if temporal else "unavailable",
    )


async def _database_ready(state: HubState) -> bool:
    """The database answers, and the rule index hears it (it reconnects in the background)."""
    await state.store.ping()
    return state.hub.index.available


async def _answers(name: str, check: Callable[[], Awaitable[object]]) -> bool:
    """Whether a check completes in time without error (and does not answer False)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT.total_seconds()):
            answer = await check()
    except Exception as error:
        log.warning("health check: %s unavailable (%s)", name, type(error).__name__)
        return False
    return answer is not False


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_access)],
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problems(401),
    },
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition (0.0.4): this process's counters, DLQ depth and circuits
    (hub_store_up 0 while the database does not answer), and Temporal's runtime metrics."""
    body = await state.metrics.scrape(state.store, runtime_metrics_url(state.temporal))
    return Response(body, media_type=CONTENT_TYPE)
