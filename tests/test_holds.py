"""Holds: a delivery that must wait (service paused, circuit open, 429 throttle, rate spent)
uses no attempt, writes no log or DLQ row and makes no call; then it goes, paced."""

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from temporalio.client import Client

from hub.client import HubClient
from hub.config import Settings
from hub.core.control import HoldReason
from hub.core.models import CircuitState, DeliveryStatus, Outcome, RuleIn, Service
from hub.core.visibility import HUB_HELD, HUB_OUTCOME
from hub.engine.holds import count_held, wake_held
from hub.engine.schedules import ensure_schedules
from hub.engine.worker import running_worker
from hub.runtime.breaker import CircuitBreaker, ThrottledError
from hub.runtime.metrics import HubMetrics
from hub.store import Store
from tests.sink import HttpSink, Reply
from tests.test_circuit import NO_ROW, attempt_log, circuit_of, service_with


async def until(what: Callable[[], Awaitable[bool]], seconds: float, step: float = 0.1) -> None:
    """Poll ``what`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await what():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(step)


@asynccontextmanager
async def own_queue(
    settings: Settings, temporal: Client, store: Store, name: str
) -> AsyncIterator[tuple[Settings, HubClient]]:
    """Settings and an emitting client on a task queue of this test's own (its workers can
    be stopped and doubled without touching the session's)."""
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-{name}"})
    try:
        async with HubClient.connect(own, temporal=temporal, store=store) as hub:
            yield own, hub
    finally:
        await ensure_schedules(temporal, settings)  # schedules follow the last worker


async def add_rule(store: Store, hub: HubClient, event: str, service: Service, path: str) -> None:
    await store.rules.create(RuleIn(event=event, service=service.name, endpoint=path))
    await hub.index.refresh(min_version=await store.rules.config_version())


def sent_ids(sink: HttpSink, path: str) -> list[str]:
    return [r.headers["x-hub-event-id"] for r in sink.at(path)]


async def test_gcra_slots_are_one_interval_apart(store, unique):
    """The arithmetic of the shared bucket: a burst of 1, then one slot per interval."""
    service = await service_with(store, unique)
    waits = [await store.circuits.reserve(service.id, 0.2) for _ in range(5)]
    for n, wait in enumerate(waits):
        assert n * 0.2 - 0.05 <= wait <= n * 0.2 + 0.01
    await asyncio.sleep(1.2)  # idle: the bucket does not save up a burst
    assert await store.circuits.reserve(service.id, 0.2) == 0.0
    assert 0.15 <= await store.circuits.reserve(service.id, 0.2) <= 0.21


async def test_a_429_throttle_is_shared_through_the_row(store, unique):
    service = await service_with(store, unique, cb_threshold=5)
    breaker = CircuitBreaker(store)
    permit = await breaker.admit(service)
    await breaker.record(
        service, permit, healthy=False, log_id=NO_ROW, log=attempt_log(service.name), throttle=2
    )
    for fresh in (breaker, CircuitBreaker(store)):  # cached here, read there
        with pytest.raises(ThrottledError) as held:
            await fresh.admit(service)
        assert 1.5 < held.value.retry_in <= 2.0
    await store.circuits.reset(service.name)
    assert (await CircuitBreaker(store).admit(service)).probe_owner is None


async def test_pause_holds_across_a_worker_restart_and_resume_delivers_once(
    settings, temporal, store, sink, make_service, unique
):
    service = await make_service()
    await store.services.set_paused(service.name, True)
    async with own_queue(settings, temporal, store, f"pause-{unique}") as (own, hub):
        await add_rule(store, hub, f"{unique}.p", service, "/p")
        async with running_worker(own, temporal=temporal):
            emitted = [
                await hub.emit(f"{unique}.p", {"n": n}, event_id=f"{unique}-{n}") for n in range(3)
            ]
            handles = [temporal.get_workflow_handle(e.workflow_id or "") for e in emitted]

            async def all_held() -> bool:
                return await count_held(temporal, service.name, HoldReason.PAUSED) == 3

            await until(all_held, 15)
            for handle in handles:
                attributes = (await handle.describe()).typed_search_attributes
                assert attributes.get(HUB_OUTCOME) == Outcome.PAUSED.value
                assert attributes.get(HUB_HELD) == [service.name, f"{service.name}:paused"]
        # A new worker: the pause survives, still nothing goes.
        async with running_worker(own, temporal=temporal):
            await asyncio.sleep(1.5)
            assert sink.at("/p") == []
            for n in range(3):
                assert await store.log.recent(event_id=f"{unique}-{n}") == []
            assert await store.dlq.recent(service=service.name) == []
            assert await count_held(temporal, service.name) == 3

            resumed_at = time.monotonic()
            await store.services.set_paused(service.name, False)
            assert await wake_held(temporal, service.name) == 3
            async with asyncio.timeout(10):
                results = [await h.result() for h in handles]

    assert time.monotonic() - resumed_at < 5  # woken, not left to the 10 s timers
    assert sorted(sent_ids(sink, "/p")) == [f"{unique}-{n}" for n in range(3)]
    assert all(r["outcome"] == Outcome.DELIVERED.value for r in results)
    for n in range(3):
        [row] = await store.log.recent(event_id=f"{unique}-{n}")
        assert (row.attempt, row.status_code) == (1, 200)
    assert await store.dlq.recent(service=service.name) == []
    for handle in handles:
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(HUB_OUTCOME) == Outcome.DELIVERED.value
        assert not attributes.get(HUB_HELD)


class ThreadedSink:
    """An HttpSink on its own thread and event loop: its arrival times are not delayed by
    the workers sharing this test's loop."""

    def __init__(self) -> None:
        self.sink = HttpSink()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> HttpSink:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.sink.start(), self._loop).result(10)
        return self.sink

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.sink.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def threaded_sink() -> Iterator[HttpSink]:
    with ThreadedSink() as sink:
        yield sink


async def test_rate_limit_holds_across_two_workers(
    settings, temporal, store, threaded_sink, make_service, unique
):
    sink = threaded_sink
    service = await make_service(rate="5/s", base_url=sink.url)
    count = 30
    first, second = HubMetrics(), HubMetrics()
    async with (
        own_queue(settings, temporal, store, f"rate-{unique}") as (own, hub),
        AsyncExitStack() as workers,
    ):
        await add_rule(store, hub, f"{unique}.r", service, "/r")
        # Two workers, as two processes would be: each with its own Temporal client.
        for metrics in (first, second):
            await workers.enter_async_context(running_worker(own, metrics=metrics))
        # Warm both workers up (their first workflow runs load the sandbox), then a burst.
        await asyncio.gather(
            *(hub.emit(f"{unique}.r", {}, event_id=f"{unique}-w{n}", wait=True) for n in (0, 1))
        )
        emitted = await asyncio.gather(
            *(hub.emit(f"{unique}.r", {"n": n}, event_id=f"{unique}-{n}") for n in range(count))
        )
        async with asyncio.timeout(30):
            for e in emitted:
                result = await temporal.get_workflow_handle(e.workflow_id or "").result()
                assert result["outcome"] == Outcome.DELIVERED.value

    arrivals = sorted(r.at for r in sink.at("/r"))
    assert len(arrivals) == count + 2
    busiest = max(sum(1 for b in arrivals if a <= b < a + 1.0) for a in arrivals)
    spread = [round(at - arrivals[0], 2) for at in arrivals]
    assert busiest <= 5 + 1, spread  # the rate, plus the bucket's burst of 1
    assert arrivals[-1] - arrivals[0] >= (count - 1) / 5 - 0.3
    for n in range(count):
        [row] = await store.log.recent(event_id=f"{unique}-{n}")
        assert row.attempt == 1  # the waits used no attempt
    assert await store.dlq.recent(service=service.name) == []

    def attempts(metrics: HubMetrics) -> float:
        labels = {"service": service.name, "transport": "http", "status_class": "2xx"}
        return metrics.registry.get_sample_value("hub_delivery_attempts_total", labels) or 0

    def holds(metrics: HubMetrics) -> float:
        labels = {"service": service.name, "reason": "rate_limited"}
        return metrics.registry.get_sample_value("hub_delivery_holds_total", labels) or 0

    assert attempts(first) > 0 and attempts(second) > 0  # both workers sent, one bucket
    assert attempts(first) + attempts(second) == count + 2
    assert holds(first) + holds(second) > 0


async def test_open_circuit_holds_past_five_cooldowns_then_delivers(
    hub, store, sink, make_service, make_rule, unique
):
    cooldown = 1.2  # above Temporal's timer resolution (~1 s), so a backoff is not a probe
    service = await make_service(cb_threshold=2, cb_cooldown=cooldown, max_attempts=5, backoff=0.1)
    await make_rule(f"{unique}.c", service, endpoint="/c")
    sink.script("/c", then=500)
    opener = await hub.emit(f"{unique}.c", {}, event_id=f"{unique}-0")
    await until(lambda: _received(sink, "/c", 2), 10, 0.02)
    down_since = time.monotonic()
    others = [await hub.emit(f"{unique}.c", {}, event_id=f"{unique}-{n}") for n in (1, 2)]

    async def held_on_circuit() -> bool:
        return await count_held(hub.temporal, service.name, HoldReason.CIRCUIT_OPEN) == 3

    await until(held_on_circuit, 10)
    await asyncio.sleep(max(0.0, 5 * cooldown + 0.5 - (time.monotonic() - down_since)))
    sink.script("/c", then=200)
    recovered_at = time.monotonic()
    async with asyncio.timeout(60):
        results = [
            await hub.temporal.get_workflow_handle(e.workflow_id or "").result()
            for e in (opener, *others)
        ]

    assert all(r["outcome"] == Outcome.DELIVERED.value for r in results)
    assert await store.dlq.recent(service=service.name) == []
    requests = sink.at("/c")
    failed = [r for r in requests if r.at < recovered_at]
    assert len(failed) >= 2
    # While it was open, only probes went out: one at a time, a cooldown apart at least.
    probes = [r.at for r in failed[2:]]
    gaps = [b - a for a, b in zip([failed[1].at, *probes], probes, strict=False)]
    assert all(gap >= cooldown - 0.05 for gap in gaps)
    assert len(probes) <= (recovered_at - down_since) / cooldown
    # Attempts are the real tries: one log row per request, none for the held time.
    for n, result in enumerate(results):
        rows = await store.log.recent(event_id=f"{unique}-{n}")
        tries = [r for r in requests if r.headers["x-hub-event-id"] == f"{unique}-{n}"]
        assert len(rows) == len(tries) == result["deliveries"][0]["attempts"]
        assert all(r.latency_ms is not None for r in rows)
    assert results[0]["deliveries"][0]["attempts"] <= 5
    assert (await circuit_of(store, service.name)).state is CircuitState.CLOSED
    # The probe that closed it woke the others (their timers were 5 s and more away).
    delivered = sorted(r.at for r in requests if r.at >= recovered_at)
    assert len(delivered) == 3 and delivered[-1] - delivered[0] < 3.0


async def test_circuit_reset_wakes_the_deliveries_it_held(
    hub, cli, store, sink, make_service, make_rule, unique
):
    service = await make_service(cb_threshold=1, cb_cooldown=600, backoff=0.1)
    await make_rule(f"{unique}.w", service, endpoint="/w")
    sink.script("/w", 500, then=200)
    emitted = [await hub.emit(f"{unique}.w", {}, event_id=f"{unique}-0")]

    async def opened() -> bool:
        return (await circuit_of(store, service.name)).state is CircuitState.OPEN

    await until(opened, 10, 0.02)
    emitted.append(await hub.emit(f"{unique}.w", {}, event_id=f"{unique}-1"))

    async def both_held() -> bool:
        return await count_held(hub.temporal, service.name, HoldReason.CIRCUIT_OPEN) == 2

    await until(both_held, 15)
    assert len(sink.at("/w")) == 1
    reset = await cli("circuit", "reset", service.name)
    assert reset.code == 0, reset.stderr
    async with asyncio.timeout(10):
        results = [
            await hub.temporal.get_workflow_handle(e.workflow_id or "").result() for e in emitted
        ]

    assert all(r["outcome"] == Outcome.DELIVERED.value for r in results)
    assert sorted(sent_ids(sink, "/w")[1:]) == [f"{unique}-0", f"{unique}-1"]
    assert await store.dlq.recent(service=service.name) == []


async def _received(sink: HttpSink, path: str, count: int) -> bool:
    return len(sink.at(path)) >= count


async def test_a_429_retry_after_holds_the_whole_service(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(backoff=0.1)
    await make_rule(f"{unique}.t", service, endpoint="/t")
    sink.script("/t", Reply(status=429, headers={"Retry-After": "3"}), then=200)
    first = await hub.emit(f"{unique}.t", {}, event_id=f"{unique}-0")
    await until(lambda: _received(sink, "/t", 1), 10, 0.02)
    throttled_at = sink.at("/t")[0].at
    others = [await hub.emit(f"{unique}.t", {}, event_id=f"{unique}-{n}") for n in (1, 2, 3)]

    async def seen_throttled() -> bool:
        return await count_held(hub.temporal, service.name, HoldReason.THROTTLED) >= 1

    await until(seen_throttled, 3, 0.05)
    async with asyncio.timeout(20):
        results = [
            await hub.temporal.get_workflow_handle(e.workflow_id or "").result()
            for e in (first, *others)
        ]

    assert all(r["outcome"] == Outcome.DELIVERED.value for r in results)
    later = sink.at("/t")[1:]
    assert len(later) == 4  # the first one's retry and the three others, once each
    assert all(r.at - throttled_at >= 2.9 for r in later)
    for n in (1, 2, 3):
        [row] = await store.log.recent(event_id=f"{unique}-{n}")
        assert (row.attempt, row.status_code) == (1, 200)
    assert [r.status_code for r in await store.log.recent(event_id=f"{unique}-0")] in (
        [200, 429],
        [429, 200],
    )


async def test_a_hold_past_max_hold_is_dead_lettered_without_a_call(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(max_hold=2)
    # Paused before the rule exists: the worker's index, caught up to the rule, sees it.
    await store.services.set_paused(service.name, True)
    await make_rule(f"{unique}.m", service, endpoint="/m")

    started = time.monotonic()
    emitted = await hub.emit(f"{unique}.m", {}, event_id=f"{unique}-m", wait=True)

    assert emitted.result is not None
    assert emitted.result.outcome is Outcome.DEAD_LETTERED
    [outcome] = emitted.result.deliveries
    assert (outcome.status, outcome.attempts) == (DeliveryStatus.DEAD_LETTERED, 0)
    assert 2.0 <= time.monotonic() - started < 10
    [dead] = await store.dlq.recent(event=f"{unique}-m")
    assert dead.error.startswith("hold expired: held 2s (paused)")
    assert "max hold of 2s" in dead.error
    assert dead.attempts == 0
    assert sink.at("/m") == []
    # No attempt: only the DLQ's own row, attempt 0, that never reached the network.
    [row] = await store.log.recent(event_id=f"{unique}-m")
    assert (row.attempt, row.status_code, row.latency_ms) == (0, None, None)
