"""A Temporal server restart while a producer emits events through HubClient at 20 per second.

The test owns what it breaks: a Temporal dev server of its own (with a database file, so its
state survives the restart), the worker and the clients that use it. The session's server is
never touched. The worker is not restarted: it must find the server again by itself. The sink
answers slowly, so the restart lands on sends in flight; one whose outcome never reached the
server is made again, and must say so with the next X-Hub-Attempt. The producer retries an
emit that fails while Temporal is down, as a producer would. At the end, what the sink
received is counted against what was accepted: nothing lost, never the same X-Hub-Attempt
twice for a delivery, every request has its log row, no DLQ row (the receiver never failed),
and every workflow completed.
"""

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from hub.client import HubClient
from hub.config import Settings
from hub.core.models import DispatchResult, RuleIn, ServiceIn
from hub.engine.worker import running_worker
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, free_port
from hub.store import Store
from tests.sink import HttpSink, Reply
from workflows.dispatch import DispatchEventWorkflow

EVENTS = 100
RATE = 20.0  # events per second
RESTART_AT = 2.0  # seconds into the emitting
DOWN_FOR = 5.0
RETRY_EVERY = 0.25
SLOW_REPLY = 0.5  # seconds the sink takes to answer


@dataclass
class Producer:
    """Emits events at a steady rate; retries each one until Temporal takes it."""

    hub: HubClient
    name: str
    accepted: dict[str, str] = field(default_factory=dict)  # event id -> workflow id
    refused: Counter[str] = field(default_factory=Counter)
    longest: float = 0.0  # seconds, from the first try to acceptance

    async def emit(self, event_id: str) -> None:
        began = time.monotonic()
        while True:
            try:
                emitted = await asyncio.wait_for(
                    self.hub.emit(self.name, {"n": event_id}, event_id=event_id), 10
                )
            except (RPCError, TimeoutError) as err:
                self.refused[type(err).__name__] += 1
            else:
                assert emitted.matched and emitted.workflow_id is not None, emitted
                self.accepted[event_id] = emitted.workflow_id
                self.longest = max(self.longest, time.monotonic() - began)
                return
            await asyncio.sleep(RETRY_EVERY)

    async def run(self, ids: list[str]) -> None:
        start = time.monotonic()
        emits = []
        for n, event_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            emits.append(asyncio.create_task(self.emit(event_id)))
        await asyncio.gather(*emits)


async def restart(server: TemporalDevServer) -> None:
    """Stop the server RESTART_AT s in, keep it down DOWN_FOR s, start it on the same port
    and database file. Started from a thread: no parent-death signal ties it to that thread
    (hub.runtime.children), and the event loop keeps running meanwhile."""
    await asyncio.sleep(RESTART_AT)
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(DOWN_FOR)
    await asyncio.to_thread(server.start)


@pytest.mark.timeout(90)
async def test_a_temporal_restart_loses_nothing_and_the_worker_reconnects(
    settings: Settings, sink: HttpSink, unique: str, tmp_path: Path
) -> None:
    server = TemporalDevServer(
        port=free_port(),
        db_file=tmp_path / "temporal" / "temporal.db",
        log_file=tmp_path / "temporal.log",
    )
    await asyncio.to_thread(server.start)
    own = settings.model_copy(
        update={"temporal_address": server.address, "task_queue": f"hub-restart-{unique}"}
    )
    try:
        temporal = await connect_temporal(own)
        async with (
            running_worker(own, temporal=await connect_temporal(own)),
            Store.open(settings.database_url or "", max_size=4) as store,
        ):
            service = await store.services.create(
                ServiceIn(name=f"{unique}-svc", base_url=sink.url, backoff=0.1)
            )
            await store.rules.create(
                RuleIn(event=f"{unique}.*", service=service.name, endpoint="/r")
            )
            # Slow replies: the restart lands while several sends are in flight.
            sink.script("/r", then=Reply(delay=SLOW_REPLY))
            async with HubClient.connect(own, temporal=temporal, store=store) as hub:
                await hub.index.refresh(min_version=await store.rules.config_version())
                producer = Producer(hub, f"{unique}.order")
                ids = [f"{unique}-{n}" for n in range(EVENTS)]
                await asyncio.gather(restart(server), producer.run(ids))
                results = await asyncio.wait_for(
                    asyncio.gather(*(_result(temporal, w) for w in producer.accepted.values())),
                    45,
                )
            await _check(store, sink, temporal, ids, producer, results)
    finally:
        await asyncio.to_thread(server.stop)


async def _result(temporal: Client, workflow_id: str) -> DispatchResult:
    """The workflow's result, asked again if the call itself fails while the server restarts."""
    handle = temporal.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id)
    while True:
        try:
            return await handle.result()
        except RPCError:
            await asyncio.sleep(RETRY_EVERY)


async def _check(
    store: Store,
    sink: HttpSink,
    temporal: Client,
    ids: list[str],
    producer: Producer,
    results: list[DispatchResult],
) -> None:
    assert set(producer.accepted) == set(ids)
    # The client retries a call while the server is down, so an emit may wait rather than fail.
    seen = sum(producer.refused.values()) > 0 or producer.longest >= DOWN_FOR / 2
    assert seen, "the restart was not seen by the producer"
    assert {r.outcome.value for r in results} == {"delivered"}
    sends: defaultdict[str, list[int]] = defaultdict(list)
    for request in sink.received:
        sends[request.headers["idempotency-key"]].append(int(request.headers["x-hub-attempt"]))
    received = {r.headers["x-hub-event-id"] for r in sink.received}
    rows = await store.pool.fetch(
        "SELECT delivery_id, attempt, status FROM delivery_log WHERE event_id = ANY($1)", ids
    )
    logged = {(r["delivery_id"], r["attempt"]) for r in rows}
    unlogged = {(key, a) for key, attempts in sends.items() for a in attempts} - logged
    renumbered = {key: a for key, a in sends.items() if len(set(a)) != len(a)}
    dead = await store.pool.fetchval("SELECT count(*) FROM dlq WHERE event_id = ANY($1)", ids)
    lost = set(ids) - received
    assert (len(lost), len(renumbered), len(unlogged), dead) == (0, 0, 0, 0), (
        f"lost {sorted(lost)[:5]}, same attempt sent twice {list(renumbered.items())[:5]}, "
        f"sends without a log row {sorted(unlogged)[:5]}, DLQ rows {dead}"
    )
    for workflow_id in producer.accepted.values():
        described = await temporal.get_workflow_handle(workflow_id).describe()
        assert described.status == WorkflowExecutionStatus.COMPLETED, workflow_id
    repeated = sum(len(a) - 1 for a in sends.values())
    statuses = dict(Counter(r["status"] for r in rows))
    print(
        f"temporal restart: {EVENTS} events, emits refused {dict(producer.refused)}, "
        f"longest emit {producer.longest:.1f}s, "
        f"{repeated} deliveries sent again (numbered), log rows {statuses}"
    )
