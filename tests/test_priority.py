"""Task-queue priority and fairness on the real dev server (hub/runtime/embedded.py turns
them on): a rule's priority lets its events overtake a backlog; services' weights share a
backlogged queue in proportion.

Each test has a task queue of its own, with no worker until the backlog is queued; then a
worker with few slots starts and the sink's arrival order shows the dispatch order.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from temporalio.client import Client

from hub.client import HubClient
from hub.config import Settings
from hub.engine.worker import running_worker
from hub.store import Store
from tests.sink import HttpSink

BACKLOG = 120
URGENT = 5
# Where the urgent events must all arrive: FIFO puts them after the whole backlog, and a
# random order puts all five in the first 20 of 125 with a chance of about 1 in 5,000.
URGENT_WITHIN = 20
FAIR_EACH = 90
FAIR_FIRST = 60


@asynccontextmanager
async def late_queue(
    settings: Settings, store: Store, temporal: Client, unique: str
) -> AsyncIterator[tuple[Settings, HubClient]]:
    """Settings for a task queue nobody polls yet, and an emitter on it."""
    own = settings.model_copy(
        update={
            "task_queue": f"{settings.task_queue}-{unique}",
            "max_concurrent_activities": 2,
            "max_concurrent_workflow_tasks": 2,
        }
    )
    async with HubClient.connect(own, temporal=temporal, store=store) as client:
        await client.index.refresh(min_version=await store.rules.config_version())
        yield own, client


async def emit_all(client: HubClient, name: str, ids: list[str]) -> None:
    """Emit events concurrently (their order among themselves does not matter here)."""
    limit = asyncio.Semaphore(20)

    async def one(event_id: str) -> None:
        async with limit:
            await client.emit(name, {"id": event_id}, event_id=event_id)

    await asyncio.gather(*(one(event_id) for event_id in ids))


async def until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the deliveries did not all arrive in time"
        await asyncio.sleep(0.1)


async def drain(own: Settings, sink: HttpSink, expected: int) -> list[str]:
    """Start the late worker; the arrival order of the sink's requests, by path."""
    async with running_worker(own):
        await until(lambda: len(sink.received) >= expected, seconds=60)
    return [request.path for request in sink.received]


async def test_urgent_events_overtake_a_backlog(
    settings, store, temporal, sink, make_service, make_rule, unique
):
    service = await make_service()
    await make_rule(f"{unique}.bulk", service, endpoint="/bulk", priority=5)
    await make_rule(f"{unique}.urgent", service, endpoint="/urgent", priority=1)
    async with late_queue(settings, store, temporal, unique) as (own, client):
        await emit_all(client, f"{unique}.bulk", [f"{unique}-b{i}" for i in range(BACKLOG)])
        await emit_all(client, f"{unique}.urgent", [f"{unique}-u{i}" for i in range(URGENT)])
        order = await drain(own, sink, BACKLOG + URGENT)

    assert order.count("/bulk") == BACKLOG
    urgent_at = [i for i, path in enumerate(order) if path == "/urgent"]
    assert len(urgent_at) == URGENT
    assert max(urgent_at) < URGENT_WITHIN, urgent_at


async def test_weighted_services_share_a_backlog_in_proportion(
    settings, store, temporal, sink, make_service, make_rule, unique
):
    light = await make_service(base_url=sink.url + "/light", weight=1)
    heavy = await make_service(base_url=sink.url + "/heavy", weight=2)
    await make_rule(f"{unique}.light", light, endpoint="/e")
    await make_rule(f"{unique}.heavy", heavy, endpoint="/e")
    async with late_queue(settings, store, temporal, unique) as (own, client):
        # The light service's backlog first: FIFO would deliver all of it first.
        await emit_all(client, f"{unique}.light", [f"{unique}-l{i}" for i in range(FAIR_EACH)])
        await emit_all(client, f"{unique}.heavy", [f"{unique}-h{i}" for i in range(FAIR_EACH)])
        order = await drain(own, sink, 2 * FAIR_EACH)

    first = order[:FAIR_FIRST]
    light_share = first.count("/light/e") / FAIR_FIRST
    # 1:2 is a third; FIFO gives 1, equal weights a half.
    assert 0.2 <= light_share <= 0.43, (light_share, first)
    assert order.count("/heavy/e") == FAIR_EACH
