"""The shared circuit breaker: transitions on real PostgreSQL, and its effect on deliveries."""

import asyncio

import pytest

from hub.core.models import CircuitState, LogEntryIn, LogStatus, Outcome, ServiceIn
from hub.core.visibility import HUB_HELD, HUB_OUTCOME
from hub.runtime.breaker import CircuitBreaker, CircuitOpenError, Permit
from hub.store import Store
from tests.sink import Reply


@pytest.fixture
async def second_store(database_url):
    """Another pool, standing for another worker process."""
    async with Store.open(database_url) as store:
        yield store


def attempt_log(service_name: str) -> LogEntryIn:
    return LogEntryIn(service=service_name, status=LogStatus.FAILED, error="test")


NO_ROW = 0
"""These tests watch the circuit; the log row the outcome would be written over is absent."""


async def fail(breaker: CircuitBreaker, service, permit: Permit | None = None):
    permit = permit or Permit(service.id)
    return await breaker.record(
        service, permit, healthy=False, log_id=NO_ROW, log=attempt_log(service.name)
    )


async def succeed(breaker: CircuitBreaker, service, permit: Permit | None = None):
    permit = permit or Permit(service.id)
    return await breaker.record(
        service, permit, healthy=True, log_id=NO_ROW, log=attempt_log(service.name)
    )


async def circuit_of(store: Store, name: str):
    [circuit] = [c for c in await store.circuits.all() if c.service == name]
    return circuit


async def service_with(store: Store, unique: str, **fields):
    values = {"name": f"{unique}-cb", "base_url": "http://127.0.0.1:9", **fields}
    return await store.services.create(ServiceIn.model_validate(values))


async def test_threshold_opens_and_success_resets_the_count(store, unique):
    service = await service_with(store, unique, cb_threshold=3, cb_cooldown=30)
    breaker = CircuitBreaker(store)

    await fail(breaker, service)
    await fail(breaker, service)
    reading = await succeed(breaker, service)
    assert (reading.state, reading.failures) == (CircuitState.CLOSED, 0)

    for _ in range(2):
        await fail(breaker, service)
    assert (await circuit_of(store, service.name)).state is CircuitState.CLOSED
    reading = await fail(breaker, service)
    assert reading.state is CircuitState.OPEN
    assert 29 < reading.retry_in <= 30

    with pytest.raises(CircuitOpenError) as refused:
        await breaker.admit(service)
    assert refused.value.state is CircuitState.OPEN
    assert 29 < refused.value.retry_in <= 30
    # A fresh breaker (no cache) reads the same answer from the database.
    with pytest.raises(CircuitOpenError):
        await CircuitBreaker(store).admit(service)


async def test_one_probe_among_twenty_racers_on_two_pools(store, second_store, unique):
    service = await service_with(store, unique, cb_threshold=1, cb_cooldown=0.5)
    first, second = CircuitBreaker(store), CircuitBreaker(second_store)
    await fail(first, service)
    await asyncio.sleep(0.6)

    async def try_admit(breaker: CircuitBreaker) -> Permit | CircuitOpenError:
        try:
            return await breaker.admit(service)
        except CircuitOpenError as refused:
            return refused

    results = await asyncio.gather(*(try_admit(b) for b in [first, second] * 10))

    probes = [r for r in results if isinstance(r, Permit)]
    assert len(probes) == 1 and probes[0].probe_owner is not None
    refused = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(refused) == 19
    assert all(0 < r.retry_in <= 0.5 for r in refused)
    assert (await circuit_of(store, service.name)).state is CircuitState.HALF_OPEN

    # A late result from a non-probe call changes nothing; the probe's verdict does.
    await fail(second, service)
    assert (await circuit_of(store, service.name)).state is CircuitState.HALF_OPEN
    reading = await succeed(first, service, probes[0])
    assert (reading.state, reading.failures) == (CircuitState.CLOSED, 0)
    assert await second.admit(service) == Permit(service.id)


async def test_failed_probe_reopens_and_restarts_the_cooldown(store, unique):
    service = await service_with(store, unique, cb_threshold=1, cb_cooldown=0.3)
    breaker = CircuitBreaker(store)
    await fail(breaker, service)
    opened_first = (await circuit_of(store, service.name)).opened_at
    await asyncio.sleep(0.4)

    probe = await breaker.admit(service)
    reading = await fail(breaker, service, probe)

    assert reading.state is CircuitState.OPEN
    assert reading.opened_at > opened_first
    with pytest.raises(CircuitOpenError):
        await breaker.admit(service)


async def test_probe_of_a_dead_worker_expires(store, unique):
    service = await service_with(store, unique, cb_threshold=1, cb_cooldown=0.2, timeout=0.1)
    dead_worker = CircuitBreaker(store, probe_margin=0.2)
    await fail(dead_worker, service)
    await asyncio.sleep(0.3)
    assert (await dead_worker.admit(service)).probe_owner is not None  # then the worker dies

    other = CircuitBreaker(store, probe_margin=0.2)
    with pytest.raises(CircuitOpenError) as refused:
        await other.admit(service)
    assert refused.value.state is CircuitState.HALF_OPEN
    await asyncio.sleep(0.35)
    assert (await other.admit(service)).probe_owner is not None


async def test_concurrent_failures_from_two_pools_are_all_counted(store, second_store, unique):
    service = await service_with(store, unique, cb_threshold=1000)
    first, second = CircuitBreaker(store), CircuitBreaker(second_store)

    await asyncio.gather(*(fail(b, service) for b in [first, second] * 25))

    circuit = await circuit_of(store, service.name)
    assert (circuit.state, circuit.failures) == (CircuitState.CLOSED, 50)


async def test_reset_closes_one_or_all(store, unique):
    a = await service_with(store, unique, name=f"{unique}-a", cb_threshold=1)
    b = await service_with(store, unique, name=f"{unique}-b", cb_threshold=1)
    breaker = CircuitBreaker(store)
    await fail(breaker, a)
    await fail(breaker, b)

    assert await store.circuits.reset(a.name) == 1
    assert (await circuit_of(store, a.name)).state is CircuitState.CLOSED
    assert (await circuit_of(store, b.name)).state is CircuitState.OPEN
    assert await store.circuits.reset() >= 2
    circuit = await circuit_of(store, b.name)
    assert (circuit.state, circuit.failures, circuit.opened_at) == (CircuitState.CLOSED, 0, None)


# Through the worker: HTTP deliveries and the breaker together.


async def test_client_errors_do_not_count(hub, store, sink, make_service, make_rule, unique):
    service = await make_service(cb_threshold=1)
    await make_rule(f"{unique}.nf", service, endpoint="/nf")
    sink.script("/nf", then=404)

    result = await hub.emit(f"{unique}.nf", {}, wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    circuit = await circuit_of(store, service.name)
    assert (circuit.state, circuit.failures) == (CircuitState.CLOSED, 0)


async def test_open_circuit_refuses_without_a_request(
    hub, temporal, store, sink, make_service, make_rule, unique
):
    service = await make_service(cb_threshold=2, cb_cooldown=60, max_attempts=2)
    await make_rule(f"{unique}.o", service, endpoint="/o")
    sink.script("/o", then=500)
    opened = await hub.emit(f"{unique}.o", {}, wait=True)
    assert opened.result.outcome is Outcome.DEAD_LETTERED
    assert (await circuit_of(store, service.name)).state is CircuitState.OPEN
    assert len(sink.at("/o")) == 2

    refused = await hub.emit(f"{unique}.o", {}, event_id=f"{unique}-refused")
    handle = temporal.get_workflow_handle(refused.workflow_id)
    # Held, not refused as an attempt: no log row, no request, a timer for the cooldown.
    for _ in range(100):
        history = [e async for e in handle.fetch_history_events()]
        timers = [
            e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()
            for e in history
            if e.HasField("timer_started_event_attributes")
        ]
        if timers:
            break
        await asyncio.sleep(0.05)
    [timer] = timers
    assert 55 <= timer <= 75  # the remaining cooldown of 60 s, plus jitter
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(HUB_OUTCOME) == Outcome.HELD.value
    assert attributes.get(HUB_HELD) == [service.name, f"{service.name}:circuit_open"]
    assert await store.log.recent(event_id=f"{unique}-refused") == []
    assert len(sink.at("/o")) == 2
    await handle.terminate("test done")


async def test_delivery_recovers_after_cooldown_without_dlq(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(cb_threshold=2, cb_cooldown=3.0, max_attempts=5, backoff=0.1)
    await make_rule(f"{unique}.r", service, endpoint="/r")
    sink.script("/r", 500, 500, then=200)

    result = await hub.emit(f"{unique}.r", {}, event_id=f"{unique}-r", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    assert len(sink.at("/r")) == 3
    _, second_failure, probe = sink.at("/r")
    assert probe.at - second_failure.at >= 2.9
    logs = sorted(await store.log.recent(event_id=f"{unique}-r"), key=lambda r: r.id)
    # Only the real tries are attempts: the wait for the probe wrote no row.
    assert [r.status_code for r in logs] == [500, 500, 200]
    assert await store.dlq.recent(event=f"{unique}-r") == []
    assert (await circuit_of(store, service.name)).state is CircuitState.CLOSED


async def test_racing_deliveries_send_a_single_probe(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(cb_threshold=1, cb_cooldown=1.5, max_attempts=5, backoff=0.1)
    await make_rule(f"{unique}.race", service, endpoint="/race")
    sink.script("/race", 500, then=Reply(delay=0.5))
    opener = await hub.emit(f"{unique}.race", {}, event_id=f"{unique}-opener")
    while not sink.at("/race"):  # noqa: ASYNC110
        await asyncio.sleep(0.02)

    racers = await asyncio.gather(
        *(hub.emit(f"{unique}.race", {}, event_id=f"{unique}-{i}", wait=True) for i in range(20))
    )

    assert all(r.result.outcome is Outcome.DELIVERED for r in racers)
    received = sorted(r.at for r in sink.at("/race"))
    assert len(received) == 22  # the failure that opened it, then 21 deliveries
    probe, after_probe = received[1], received[2]
    assert after_probe - probe >= 0.5  # nobody else got through while the probe was out
    opener_handle = hub.temporal.get_workflow_handle(opener.workflow_id)
    assert (await opener_handle.result())["outcome"] == "delivered"
