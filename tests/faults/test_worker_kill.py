"""``kill -9`` of a worker in the middle of deliveries, then a fresh worker takes over.

The test owns the worker processes (``python worker.py`` on a task queue of their own).
Delivery is at least once, so a send cut off by the kill may arrive twice; what must hold:
nothing is lost, every request the sink saw has its log row, and a repeated send carries
the same Idempotency-Key with a higher X-Hub-Attempt (never two sends with one number).
"""

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from hub.client import HubClient
from hub.core.models import DispatchResult
from hub.engine.schedules import ensure_schedules
from tests.cli_runner import hub_env, spawn_worker
from tests.faults.servers import eventually
from tests.sink import Reply
from workflows.dispatch import DispatchEventWorkflow

EVENTS = 60


@asynccontextmanager
async def worker_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await spawn_worker(env)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def result_of(temporal, workflow_id: str) -> DispatchResult:
    handle = temporal.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id)
    return await handle.result()


@pytest.mark.timeout(180)
async def test_kill_9_of_a_worker_loses_nothing_and_numbers_repeats(
    settings, temporal, store, sink, make_service, make_rule, unique
):
    queue = f"{settings.task_queue}-kill-{unique}"
    env = hub_env(settings, task_queue=queue)
    service = await make_service()
    await make_rule(f"{unique}.k", service, endpoint="/k")
    # Slow replies: the kill lands while many requests are in flight.
    sink.script("/k", *[Reply(delay=1.0)] * EVENTS, then=200)
    own_queue = settings.model_copy(update={"task_queue": queue})
    ids = [f"{unique}-{n}" for n in range(EVENTS)]
    try:
        results = await _kill_and_recover(env, own_queue, temporal, store, sink, unique, ids)
    finally:
        # A worker points the namespace's schedules at its queue on start: point them back.
        await ensure_schedules(temporal, settings)
    assert {r.outcome.value for r in results} == {"delivered"}
    sends = defaultdict(list)
    for request in sink.at("/k"):
        sends[request.headers["idempotency-key"]].append(int(request.headers["x-hub-attempt"]))
    assert {key.split("/")[0] for key in sends} == set(ids), "an event was lost"
    # A repeat is the next attempt, never a second copy of the same one.
    assert all(len(set(attempts)) == len(attempts) for attempts in sends.values()), sends
    rows = await store.pool.fetch(
        "SELECT delivery_id, attempt FROM delivery_log WHERE event_id = ANY($1)", ids
    )
    logged = {(r["delivery_id"], r["attempt"]) for r in rows}
    unlogged = {(k, a) for k, attempts in sends.items() for a in attempts} - logged
    assert unlogged == set(), "sends without a log row"
    repeated = sum(len(a) - 1 for a in sends.values())
    print(f"kill -9: {repeated} of {EVENTS} deliveries sent twice (at least once, numbered)")


async def _kill_and_recover(
    env: dict[str, str], settings, temporal, store, sink, unique: str, ids: list[str]
) -> list[DispatchResult]:
    """Emit, kill -9 the worker with requests in flight, let a new one finish the work."""
    async with HubClient.connect(settings, temporal=temporal, store=store) as hub:
        async with worker_process(env) as first:
            for event_id in ids:
                await hub.emit(f"{unique}.k", {}, event_id=event_id)

            async def in_flight() -> bool:
                return len(sink.at("/k")) >= 5

            await eventually(in_flight, 60, "requests in flight")
            first.kill()
            await first.wait()
        async with worker_process(env):
            return await asyncio.wait_for(
                asyncio.gather(*(result_of(temporal, f"event-{i}") for i in ids)), 120
            )
