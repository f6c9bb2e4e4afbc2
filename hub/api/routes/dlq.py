"""``/dlq``: deliveries that ran out of attempts, to inspect, replay or drop."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response

from hub.api.deps import StateDep, StoreDep
from hub.api.examples import EXAMPLES
from hub.api.schemas import FilterText, ReplayFilter, ReplayStarted, RowId, problems
from hub.core.models import DlqEntry, ReplayCounts, ReplayOutcome, ServiceName
from hub.engine.replay import DEFAULT_CONCURRENCY

router = APIRouter(prefix="/dlq", tags=["dead-letter queue"])


@router.get("", response_model=list[DlqEntry])
async def list_dead_letters(
    store: StoreDep,
    service: ServiceName | None = None,
    event: Annotated[FilterText | None, Query(description="An event name or event id.")] = None,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[DlqEntry]:
    """Dead-lettered deliveries, newest first."""
    return await store.dlq.recent(
        service=service, event=event, include_resolved=include_resolved, limit=limit
    )


@router.post(
    "/replay",
    status_code=202,
    response_model=ReplayCounts,
    responses={200: {"model": ReplayCounts, "description": "Waited for every replay."}},
)
async def replay_dead_letters(
    spec: Annotated[ReplayFilter, Body(openapi_examples=EXAMPLES["replay"])],
    response: Response,
    state: StateDep,
) -> ReplayCounts:
    """Replay the unresolved rows matching a filter (202), or wait for them all (200)."""
    ids = await state.store.dlq.ids(service=spec.service, event=spec.event, limit=spec.limit)
    counts = await state.replayer.replay_many(ids, wait=spec.wait, concurrency=DEFAULT_CONCURRENCY)
    response.status_code = 200 if spec.wait else 202
    return counts


@router.get("/{dlq_id}", response_model=DlqEntry, responses=problems(404))
async def get_dead_letter(dlq_id: RowId, store: StoreDep) -> DlqEntry:
    """One DLQ row with its stored payload, last error and replay count."""
    return await store.dlq.get(dlq_id)


@router.post(
    "/{dlq_id}/replay",
    status_code=202,
    response_model=ReplayStarted | ReplayOutcome,
    responses={
        200: {"model": ReplayOutcome, "description": "Waited: how the replay ended."},
        **problems(404, 409),
    },
)
async def replay_dead_letter(
    dlq_id: RowId,
    response: Response,
    state: StateDep,
    wait: Annotated[bool, Query(description="Wait until the replay ends.")] = False,
) -> ReplayStarted | ReplayOutcome:
    """Send the row's stored payload again; the row is resolved only if that delivers."""
    handle = await state.replayer.start(dlq_id)
    if not wait:
        return ReplayStarted(dlq_id=dlq_id, workflow_id=handle.id)
    outcome = await handle.result()
    response.status_code = 200
    return outcome


@router.delete("/{dlq_id}", status_code=204, responses=problems(404))
async def delete_dead_letter(dlq_id: RowId, store: StoreDep) -> None:
    """Drop a DLQ row (resolved or not) without replaying it."""
    await store.dlq.delete(dlq_id)
