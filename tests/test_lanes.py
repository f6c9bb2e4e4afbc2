"""Ordered delivery per key through the real worker, Temporal, PostgreSQL and HTTP sinks."""

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from hub.client import HubClient
from hub.core.control import MISSING_KEY, lane_id
from hub.core.models import (
    DeliveryStatus,
    DispatchInput,
    DispatchResult,
    EmitResult,
    Event,
    Outcome,
)
from hub.core.models.lane import DEPTH, ENQUEUE, LaneInput, LaneLimits, Ticket
from hub.engine.holds import count_in_lanes
from tests.sink import HttpSink, Received, read_body
from workflows.dispatch import DispatchEventWorkflow
from workflows.lane import LaneWorkflow

TEMPLATE = '{"user": {{data.user_id}}, "seq": {{data.seq}}}'


class FlakySink(HttpSink):
    """Answers 503 to a share of requests at random (never more than ``most`` times for one
    body, so nothing runs out of attempts), always to the ``doomed`` seqs; records each
    success with its wall-clock time."""

    def __init__(self, rate: float, most: int = 3, doomed: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self._random = random.Random(15)
        self._rate = rate
        self._most = most
        self._doomed = doomed
        self._failed: dict[bytes, int] = {}
        self.successes: list[tuple[dict[str, Any], float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.received.append(
            Received(scope["method"], scope["path"], "", {}, body, time.monotonic())
        )
        sent = json.loads(body)
        failed = self._failed.get(body, 0)
        flaky = failed < self._most and self._random.random() < self._rate
        status = 503 if sent["seq"] in self._doomed or flaky else 200
        if status == 200:
            self.successes.append((sent, time.time()))
        else:
            self._failed[body] = failed + 1
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def order(self) -> dict[Any, list[int]]:
        """Each key's seqs in the order the sink first accepted them."""
        seen: dict[Any, list[int]] = {}
        for sent, _ in self.successes:
            seen.setdefault(sent["user"], []).append(sent["seq"])
        return seen


@asynccontextmanager
async def flaky_sink(
    rate: float, most: int = 3, doomed: frozenset[int] = frozenset()
) -> AsyncIterator[FlakySink]:
    sink = FlakySink(rate, most, doomed)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


async def finished(temporal: Any, results: list[EmitResult]) -> list[DispatchResult]:
    """Every event workflow's result (they all complete)."""

    async def one(result: EmitResult) -> DispatchResult:
        assert result.workflow_id is not None
        handle = temporal.get_workflow_handle(result.workflow_id, result_type=DispatchResult)
        return await asyncio.wait_for(handle.result(), timeout=60)

    return await asyncio.gather(*(one(r) for r in results))


async def ordered_service(
    make_service, make_rule, name: str, sink: HttpSink, **fields: Any
) -> tuple[Any, Any]:
    """A service on the sink with fast retries and no breaker, and its rule ordered by
    data.user_id."""
    values: dict[str, Any] = {"backoff": 0.05, **fields}
    service = await make_service(base_url=sink.url, cb_threshold=1000, **values)
    rule = await make_rule(
        name, service, endpoint="/o", template=TEMPLATE, order_key="data.user_id"
    )
    return service, rule


async def test_ordering_under_random_failures(temporal, hub, make_service, make_rule, unique):
    async with flaky_sink(rate=0.3) as sink:
        service, _ = await ordered_service(make_service, make_rule, f"{unique}.o", sink)
        results = [
            await hub.emit(f"{unique}.o", {"user_id": i % 3, "seq": i}, event_id=f"{unique}-{i}")
            for i in range(60)
        ]
        outcomes = await finished(temporal, results)

        assert all(r.outcome is Outcome.DELIVERED for r in outcomes)
        assert len(sink.received) > 60  # some failed first: the order held through retries
        order = sink.order()
        for user in range(3):
            assert order[user] == list(range(user, 60, 3)), order[user]
        for user in range(3):
            lane = temporal.get_workflow_handle(lane_id(service.name, str(user)))
            assert await lane.query(DEPTH) == 0


async def test_dead_lettered_head_holds_the_lane_until_then(
    temporal, hub, store, make_service, make_rule, unique
):
    async with flaky_sink(rate=0.0, doomed=frozenset({0})) as sink:
        _, rule = await ordered_service(
            make_service, make_rule, f"{unique}.d", sink, max_attempts=3, backoff=1.0
        )
        results = [
            await hub.emit(f"{unique}.d", {"user_id": 7, "seq": i}, event_id=f"{unique}-{i}")
            for i in range(4)
        ]
        waiting = 0
        for _ in range(50):  # while the head fails, the others show as held in the lane
            waiting = await count_in_lanes(temporal, rule.id)
            if waiting == 3:
                break
            await asyncio.sleep(0.05)
        assert waiting == 3
        outcomes = await finished(temporal, results)

        [head] = outcomes[0].deliveries
        assert head.status is DeliveryStatus.DEAD_LETTERED and head.attempts == 3
        assert [r.outcome for r in outcomes[1:]] == [Outcome.DELIVERED] * 3
        seqs = [json.loads(r.body)["seq"] for r in sink.received]
        assert seqs == [0, 0, 0, 1, 2, 3]  # nothing overtook the failing head
        written = await store.pool.fetchval(
            "SELECT extract(epoch FROM created_at) FROM dlq WHERE id = $1", head.dlq_id
        )
        assert sink.order() == {7: [1, 2, 3]}
        assert sink.successes[0][1] >= float(written)  # the lane went on after the DLQ row


async def test_events_without_the_key_share_the_missing_lane(
    temporal, hub, make_service, make_rule, unique
):
    async with flaky_sink(rate=0.4) as sink:
        service = await make_service(base_url=sink.url, backoff=0.05, cb_threshold=1000)
        template = '{"seq": {{data.seq}}}'
        await make_rule(
            f"{unique}.m", service, endpoint="/o", template=template, order_key="data.user_id"
        )
        results = []
        for i in range(12):
            data = {"seq": i} if i % 2 else {"seq": i, "user_id": None}
            results.append(await hub.emit(f"{unique}.m", data, event_id=f"{unique}-{i}"))
        outcomes = await finished(temporal, results)

        assert all(r.outcome is Outcome.DELIVERED for r in outcomes)
        assert [sent["seq"] for sent, _ in sink.successes] == list(range(12))
        lane = temporal.get_workflow_handle(lane_id(service.name, MISSING_KEY))
        assert (await lane.describe()).id == f"lane:{service.name}:(missing)"


def emitter_with(hub: HubClient, settings: Any, limits: LaneLimits) -> HubClient:
    """An emitter on the test's index whose lanes pace themselves by ``limits``."""
    return HubClient(
        hub.temporal,
        hub.index,
        hub.store,
        task_queue=settings.task_queue,
        max_event_bytes=settings.max_event_bytes,
        lane_limits=limits,
    )


async def lane_runs(temporal: Any, lane: str, status: WorkflowExecutionStatus, least: int) -> int:
    """How many runs of the lane ended with ``status`` (visibility catches up in moments)."""
    count = 0
    for _ in range(50):
        runs = [r.status async for r in temporal.list_workflows(f"WorkflowId = '{lane}'")]
        count = runs.count(status)
        if count >= least:
            break
        await asyncio.sleep(0.1)
    return count


async def test_continue_as_new_keeps_the_queue(
    temporal, hub, settings, make_service, make_rule, unique
):
    emitter = emitter_with(hub, settings, LaneLimits(max_tickets=2))
    async with flaky_sink(rate=0.3) as sink:
        service, _ = await ordered_service(make_service, make_rule, f"{unique}.c", sink)
        results = [
            await emitter.emit(f"{unique}.c", {"user_id": 1, "seq": i}, event_id=f"{unique}-{i}")
            for i in range(10)
        ]
        outcomes = await finished(temporal, results)

        assert all(r.outcome is Outcome.DELIVERED for r in outcomes)
        assert sink.order() == {1: list(range(10))}
        lane = lane_id(service.name, "1")
        assert await lane_runs(temporal, lane, WorkflowExecutionStatus.CONTINUED_AS_NEW, 4) >= 4


async def test_an_idle_lane_completes_and_loses_no_ticket_at_the_boundary(
    temporal, hub, settings, make_service, make_rule, unique
):
    emitter = emitter_with(hub, settings, LaneLimits(idle_seconds=0.3))
    pauses = random.Random(15)
    async with flaky_sink(rate=0.0) as sink:
        service, _ = await ordered_service(make_service, make_rule, f"{unique}.i", sink)
        results = []
        for i in range(16):
            data = {"user_id": 1, "seq": i}
            results.append(await emitter.emit(f"{unique}.i", data, event_id=f"{unique}-{i}"))
            await asyncio.sleep(pauses.uniform(0.2, 0.6))  # around the lane's idle limit
        outcomes = await finished(temporal, results)

        assert all(r.outcome is Outcome.DELIVERED for r in outcomes)
        assert sink.order() == {1: list(range(16))}
        lane = lane_id(service.name, "1")
        assert await lane_runs(temporal, lane, WorkflowExecutionStatus.COMPLETED, 2) >= 2


async def test_heads_whose_workflows_are_closed_or_never_start_are_skipped(
    temporal, hub, settings, make_service, make_rule, unique
):
    limits = LaneLimits(check_seconds=0.5, start_grace_seconds=1.5)
    emitter = emitter_with(hub, settings, limits)
    async with flaky_sink(rate=0.0) as sink:
        service, _ = await ordered_service(make_service, make_rule, f"{unique}.g", sink)
        data = {"user_id": 1, "seq": 0}
        [first] = await finished(
            temporal, [await emitter.emit(f"{unique}.g", data, event_id=f"{unique}-0")]
        )
        lane = lane_id(service.name, "1")
        closed = Ticket(event_id=f"{unique}-again", workflow_id=f"event-{unique}-0")
        ghost = Ticket(event_id=f"{unique}-ghost", workflow_id=f"event-{unique}-ghost")
        for ticket in (closed, ghost):  # as an emitter that died before starting it would
            await temporal.start_workflow(
                LaneWorkflow.run,
                LaneInput(lane=lane, limits=limits),
                id=lane,
                task_queue=settings.task_queue,
                start_signal=ENQUEUE,
                start_signal_args=[ticket],
            )
        ticketed = time.time()
        results = [
            await emitter.emit(f"{unique}.g", {"user_id": 1, "seq": i}, event_id=f"{unique}-{i}")
            for i in (1, 2)
        ]
        outcomes = await finished(temporal, results)

        assert first.outcome is Outcome.DELIVERED
        assert all(r.outcome is Outcome.DELIVERED for r in outcomes)
        assert sink.order() == {1: [0, 1, 2]}
        waited = sink.successes[1][1] - ticketed
        assert limits.start_grace_seconds <= waited < limits.start_grace_seconds + 5


async def test_an_ordered_delivery_that_was_not_ticketed_goes_unordered_with_a_warning(
    temporal, settings, make_service, make_rule, unique, caplog
):
    async with flaky_sink(rate=0.0) as sink:
        await ordered_service(make_service, make_rule, f"{unique}.u", sink)
        event = Event(id=f"{unique}-0", name=f"{unique}.u", data={"user_id": 1, "seq": 0})
        # As an emitter whose rule index did not know the order key yet: no lanes.
        result = await temporal.execute_workflow(
            DispatchEventWorkflow.run,
            DispatchInput(event=event),
            id=f"event-{event.id}",
            task_queue=settings.task_queue,
        )

        assert result.outcome is Outcome.DELIVERED
        assert sink.order() == {1: [0]}
        warnings = [r for r in caplog.records if "sent unordered" in r.getMessage()]
        assert len(warnings) == 1
