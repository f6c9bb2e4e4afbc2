"""Prometheus metrics: exact counts from a real worker with a registry of its own, the
database gauges' queries (indexed, never the delivery log), and ``python worker.py``'s
endpoint on HUB_METRICS_PORT (a busy port stops it with one line)."""

import asyncio
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import asyncpg
import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.attempt import DeliveryAttempt
from hub.api.schemas import EMIT_OUTCOMES as API_EMIT_OUTCOMES
from hub.client import HubClient
from hub.config import Settings
from hub.core.models import (
    ConsumeInput,
    Delivery,
    HttpMethod,
    Outcome,
    RetrySettings,
    RuleIn,
    Service,
)
from hub.engine.replay import Replayer
from hub.engine.schedules import ensure_schedules
from hub.engine.worker import RunningWorker, running_worker
from hub.runtime.breaker import CircuitBreaker
from hub.runtime.embedded import free_port, port_in_use
from hub.runtime.metrics import EMIT_OUTCOMES, HubMetrics
from hub.runtime.metrics_endpoint import MetricsPortError, bind_metrics_socket
from hub.secrets import SecretBox
from hub.store import Store
from hub.store.metrics import GAUGE_QUERIES
from hub.transport.http import HttpTransport
from tests.cli_runner import hub_env, spawn_worker
from tests.sink import HttpSink
from tests.test_api import parse_metrics
from workflows.consume import ConsumeResponsesWorkflow

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class Metered:
    """A worker on a task queue of its own, counting into its own registry."""

    settings: Settings
    running: RunningWorker
    hub: HubClient
    store: Store

    def value(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for a series that does not exist (yet)."""
        return self.running.metrics.registry.get_sample_value(name, labels) or 0.0

    def attempts(self, service: Service, status: str) -> float:
        return self.value(
            "hub_delivery_attempts_total",
            service=service.name,
            transport=service.type.value,
            status_class=status,
        )

    def deliveries(self, service: Service, outcome: str) -> float:
        return self.value(
            "hub_deliveries_total",
            service=service.name,
            transport=service.type.value,
            outcome=outcome,
        )

    def transitions(self, service: Service) -> dict[str, float]:
        return {
            to: self.value("hub_circuit_transitions_total", service=service.name, to=to)
            for to in ("open", "half_open", "closed")
        }

    async def rule(self, event: str, service: Service, **fields: object) -> None:
        await self.store.rules.create(
            RuleIn.model_validate({"event": event, "service": service.name, **fields})
        )
        await self.hub.index.refresh(min_version=await self.store.rules.config_version())


@pytest.fixture(scope="module")
async def metered(settings, temporal, store) -> AsyncIterator[Metered]:
    own = settings.model_copy(update={"task_queue": f"{settings.task_queue}-metrics"})
    try:
        async with (
            running_worker(own, temporal=temporal, metrics=HubMetrics()) as running,
            HubClient.connect(own, temporal=temporal, store=store) as hub,
        ):
            yield Metered(own, running, hub, store)
    finally:
        # Schedules are per namespace: give them back to the session's worker.
        await ensure_schedules(temporal, settings)


async def test_attempts_deliveries_and_dead_letters_are_counted_exactly(
    metered, sink, make_service, unique
):
    ok, failing, rejected = (
        await make_service(),
        await make_service(max_attempts=2, cb_threshold=10),
        await make_service(max_attempts=3),
    )
    sink.script("/bad", then=500)
    sink.script("/rejected", then=400)
    await metered.rule(f"{unique}.e", ok, endpoint="/ok")
    await metered.rule(f"{unique}.e", failing, endpoint="/bad")
    await metered.rule(f"{unique}.e", rejected, endpoint="/rejected")

    emitted = await metered.hub.emit(f"{unique}.e", {"n": 1}, wait=True)

    assert emitted.result.outcome is Outcome.PARTIAL
    assert (metered.attempts(ok, "2xx"), metered.deliveries(ok, "delivered")) == (1, 1)
    assert metered.attempts(failing, "5xx") == 2
    assert metered.attempts(rejected, "4xx") == 1  # not retryable: one attempt
    for service in (failing, rejected):
        assert metered.deliveries(service, "dead_lettered") == 1
        assert metered.deliveries(service, "delivered") == 0
        assert metered.value("hub_dlq_writes_total", service=service.name) == 1
        assert metered.transitions(service) == {"open": 0, "half_open": 0, "closed": 0}
    durations = {
        s.name: metered.value(
            "hub_delivery_attempt_duration_seconds_count", service=s.name, transport="http"
        )
        for s in (ok, failing, rejected)
    }
    assert durations == {ok.name: 1, failing.name: 2, rejected.name: 1}
    labels = {"service": ok.name, "transport": "http"}
    assert metered.value("hub_delivery_attempt_duration_seconds_sum", **labels) > 0


async def test_circuit_transitions_are_counted_once_each(metered, sink, make_service, unique):
    """500, 500 (opens), held by the open circuit (no attempt), probe after the cooldown,
    200 (closes)."""
    service = await make_service(cb_threshold=2, cb_cooldown=3.0, max_attempts=5, backoff=0.1)
    sink.script("/r", 500, 500, then=200)
    await metered.rule(f"{unique}.r", service, endpoint="/r")

    emitted = await metered.hub.emit(f"{unique}.r", {}, wait=True)

    assert emitted.result.outcome is Outcome.DELIVERED
    assert len(sink.at("/r")) == 3
    assert {s: metered.attempts(service, s) for s in ("5xx", "circuit_open", "2xx")} == {
        "5xx": 2,
        "circuit_open": 0,
        "2xx": 1,
    }
    held = {"service": service.name, "reason": "circuit_open"}
    assert metered.value("hub_delivery_holds_total", **held) == 1
    assert metered.transitions(service) == {"open": 1, "half_open": 1, "closed": 1}
    assert metered.deliveries(service, "delivered") == 1
    # The refusal never reached the network: no duration.
    labels = {"service": service.name, "transport": "http"}
    assert metered.value("hub_delivery_attempt_duration_seconds_count", **labels) == 3


async def test_a_burst_of_failures_counts_one_opening(metered, sink, make_service, unique):
    """Twenty deliveries fail together against a threshold of one: the circuit opens once,
    whichever worker statement did it; the others read it open, count nothing and are held
    (then dead-lettered past their max hold)."""
    service = await make_service(cb_threshold=1, cb_cooldown=600, max_attempts=1, max_hold=1)
    sink.script("/burst", then=500)
    await metered.rule(f"{unique}.b", service, endpoint="/burst")

    results = await asyncio.gather(
        *(
            metered.hub.emit(f"{unique}.b", {}, event_id=f"{unique}-{i}", wait=True)
            for i in range(20)
        )
    )

    assert all(r.result.outcome is Outcome.DEAD_LETTERED for r in results)
    sent = len(sink.at("/burst"))
    assert metered.attempts(service, "5xx") == sent
    assert metered.attempts(service, "circuit_open") == 0
    held = {"service": service.name, "reason": "circuit_open"}
    assert metered.value("hub_delivery_holds_total", **held) == 20 - sent
    assert metered.transitions(service) == {"open": 1, "half_open": 0, "closed": 0}
    assert metered.value("hub_dlq_writes_total", service=service.name) == 20


async def test_replays_are_counted_by_outcome(metered, temporal, store, sink, make_service, unique):
    service = await make_service(max_attempts=1)
    sink.script("/rp", 500, 500, then=200)
    await metered.rule(f"{unique}.rp", service, endpoint="/rp")
    emitted = await metered.hub.emit(f"{unique}.rp", {}, wait=True)
    assert emitted.result.outcome is Outcome.DEAD_LETTERED
    [entry] = await store.dlq.recent(service=service.name)
    replayer = Replayer(temporal, store, metered.settings.task_queue)

    failed = await (await replayer.start(entry.id)).result()
    delivered = await (await replayer.start(entry.id)).result()

    assert (failed.delivered, delivered.delivered) == (False, True)
    replays = {
        outcome: metered.value("hub_dlq_replays_total", service=service.name, outcome=outcome)
        for outcome in ("delivered", "failed")
    }
    assert replays == {"delivered": 1, "failed": 1}
    assert metered.value("hub_dlq_writes_total", service=service.name) == 1  # the original
    assert metered.deliveries(service, "dead_lettered") == 1
    assert metered.deliveries(service, "delivered") == 1
    assert (metered.attempts(service, "5xx"), metered.attempts(service, "2xx")) == (2, 1)


async def test_amqp_publishes_and_responses_are_counted(metered, temporal, make_service, unique):
    assert port_in_use(5672), "RabbitMQ must listen on 127.0.0.1:5672 (.ci/run starts it)"
    connection = await aio_pika.connect_robust(BROKER)
    async with connection:
        channel = await connection.channel()
        target = await channel.declare_queue(f"{unique}-req", auto_delete=False)
        replies = await channel.declare_queue(f"{unique}-resp", auto_delete=False)
        service = await make_service(
            type="amqp", base_url=f"{BROKER}?routing_key={target.name}", response_queue=replies.name
        )
        await metered.rule(f"{unique}.q", service)
        emitted = await metered.hub.emit(f"{unique}.q", {}, wait=True)
        assert emitted.result.outcome is Outcome.DELIVERED
        assert (metered.attempts(service, "ok"), metered.deliveries(service, "delivered")) == (1, 1)

        for body in (b'{"answer": 42}', b"<html>not json</html>"):
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=replies.name)
        await temporal.execute_workflow(
            ConsumeResponsesWorkflow.run,
            ConsumeInput(max_messages=100),
            id=f"consume-{unique}",
            task_queue=metered.settings.task_queue,
        )
        # The schedule runs on this worker too, and may have taken them first: same registry.
        for _ in range(100):
            counted = {
                kind: metered.value(f"hub_responses_{kind}_total", service=service.name)
                for kind in ("consumed", "poisoned")
            }
            if sum(counted.values()) == 2:
                break
            await asyncio.sleep(0.1)
        assert counted == {"consumed": 1, "poisoned": 1}
        for queue in (target, replies):
            await queue.delete(if_unused=False, if_empty=False)
        await channel.queue_delete(f"{replies.name}.dlq")


async def test_an_attempt_waiting_for_the_database_is_a_wait_not_an_attempt(
    metered, store, make_service, unique
):
    """The hub's database refuses connections: nothing is sent, the activity raises
    HubUnavailable (Temporal retries it), and hub_delivery_waits_total counts it."""
    service = await make_service()
    await metered.hub.index.refresh(min_version=await store.rules.config_version())
    delivery = Delivery(
        id=f"{unique}-wait/1",
        event_id=f"{unique}-wait",
        event_name=f"{unique}.wait",
        rule_id=0,
        service_id=service.id,
        service=service.name,
        service_type=service.type,
        method=HttpMethod.POST,
        endpoint="/wait",
        payload="{}",
        retry=RetrySettings.of(service),
    )
    metrics = HubMetrics()
    async with (
        Store.open(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0) as dead,
        httpx.AsyncClient() as http,
    ):
        breaker = CircuitBreaker(dead, metrics=metrics)
        attempt = DeliveryAttempt(dead, metered.hub.index, breaker, SecretBox(None), metrics)
        with pytest.raises(ApplicationError) as waited:
            await ActivityEnvironment().run(
                attempt.run, delivery, HttpTransport(http, max_bytes=1024)
            )
    assert waited.value.type == "HubUnavailable"
    value = metrics.registry.get_sample_value
    labels = {"service": service.name, "reason": "database"}
    assert value("hub_delivery_waits_total", labels) == 1
    assert value("hub_delivery_attempts_total", labels | {"transport": "http"}) is None


async def test_scrape_shows_gauges_and_temporal_and_survives_a_dead_database(
    metered, settings, make_service, unique
):
    service = await make_service(max_attempts=1)
    await metered.rule(f"{unique}.g", service, endpoint="/g")
    await metered.hub.emit(f"{unique}.g", {}, wait=True)

    started = time.perf_counter()
    text = (await metered.running.scrape()).decode()
    took = time.perf_counter() - started
    samples = parse_metrics(text)
    assert samples[("hub_store_up", frozenset())] == 1
    me = ("service", service.name)
    assert samples[("hub_dlq_depth", frozenset({me}))] == 0
    assert samples[("hub_circuit_state", frozenset({me, ("state", "closed")}))] == 1
    assert samples[("hub_circuit_failures", frozenset({me}))] == 0
    names = {name for name, _ in samples}
    assert "temporal_worker_task_slots_available" in names
    assert "temporal_workflow_task_schedule_to_start_latency_bucket" in names
    assert not any(name.endswith("_created") for name in names)
    assert took < 1.0, took

    # A database that does not answer: hub_store_up 0, the rest still served; an exporter
    # that does not answer: ours alone.
    nowhere = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    )
    async with Store.open(nowhere.database_url, min_size=0) as dead:
        dead_port = free_port()
        text = (
            await metered.running.metrics.scrape(dead, f"http://127.0.0.1:{dead_port}/metrics")
        ).decode()
    samples = parse_metrics(text)
    assert samples[("hub_store_up", frozenset())] == 0
    assert not any(name.startswith(("hub_dlq_depth", "hub_circuit_state")) for name, _ in samples)
    assert (
        "hub_deliveries_total",
        frozenset({me, ("transport", "http"), ("outcome", "delivered")}),
    ) in samples
    assert not any(name.startswith("temporal_") for name, _ in samples)


async def test_the_gauge_queries_never_read_the_delivery_log(store):
    """EXPLAIN names neither delivery_log nor dlq (its depth is a count kept by triggers),
    and the statistics of the transaction that ran the scrape's statements show scans of
    services, circuit_state and dlq_depth only."""
    async with store.pool.acquire() as conn:
        for query in GAUGE_QUERIES:
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}")
            assert "delivery_log" not in plan, plan
            assert '"Relation Name": "dlq"' not in plan, plan
    # A new backend: its pending statistics are this transaction's alone.
    fresh = await asyncpg.connect(store.dsn)
    try:
        async with fresh.transaction():
            for query in GAUGE_QUERIES:
                await fresh.fetch(query)
            scanned = {
                r["relname"]
                for r in await fresh.fetch(
                    """SELECT relname FROM pg_stat_xact_user_tables
                       WHERE seq_scan + coalesce(idx_scan, 0) > 0"""
                )
            }
    finally:
        await fresh.close()
    assert scanned and scanned <= {"services", "circuit_state", "dlq_depth"}, scanned


async def test_dlq_depth_follows_every_kind_of_statement(store, unique):
    """The trigger-kept counts equal a real count after inserts, a conflicting insert,
    resolving, re-opening, deleting and a bulk update of two services in one statement.
    All in a transaction that is rolled back, so nothing stays behind."""
    a, b = f"{unique}-a", f"{unique}-b"

    async def check(conn: asyncpg.Connection) -> dict[str, int]:
        kept = dict(await conn.fetch("SELECT service, unresolved FROM dlq_depth"))
        real = dict(
            await conn.fetch(
                "SELECT service, count(*) FROM dlq WHERE resolved_at IS NULL GROUP BY service"
            )
        )
        for service in (a, b):
            assert kept.get(service, 0) == real.get(service, 0), (service, kept, real)
        return {service: real.get(service, 0) for service in (a, b)}

    insert = """INSERT INTO dlq (event_id, event_name, event, service, method, endpoint, error,
                                 attempts, workflow_id, delivery_id)
                SELECT 'e' || n, 'x', '{}', s, 'POST', '/', 'boom', 5, 'wf-' || s, 'd' || n
                FROM unnest($1::text[], $2::int[]) AS r(s, n)
                ON CONFLICT (workflow_id, delivery_id) DO NOTHING"""
    async with store.pool.acquire() as conn:
        with pytest.raises(RolledBack):
            async with conn.transaction():
                await run_statements(conn, insert, check, a, b)
                raise RolledBack


class RolledBack(Exception):
    """Raised to roll a test's transaction back."""


async def run_statements(conn, insert, check, a, b):
    """The statements of test_dlq_depth_follows_every_kind_of_statement, each checked."""
    await conn.execute(insert, [a, a, a, b, b], [1, 2, 3, 4, 5])
    assert await check(conn) == {a: 3, b: 2}
    await conn.execute(insert, [a, b], [1, 6])  # a's is a conflict: not counted
    assert await check(conn) == {a: 3, b: 3}
    await conn.execute("UPDATE dlq SET resolved_at = now() WHERE service = $1", a)
    assert await check(conn) == {a: 0, b: 3}
    await conn.execute(
        "UPDATE dlq SET resolved_at = NULL WHERE service = $1 AND delivery_id = 'd1'", a
    )
    await conn.execute("DELETE FROM dlq WHERE service = $1 AND delivery_id = 'd4'", b)
    assert await check(conn) == {a: 1, b: 2}
    await conn.execute(
        "UPDATE dlq SET replay_count = replay_count + 1 WHERE service = ANY($1::text[])",
        [a, b],
    )
    await conn.execute("DELETE FROM dlq WHERE service = ANY($1::text[])", [a, b])
    assert await check(conn) == {a: 0, b: 0}


async def wait_for_metrics(port: int, process: asyncio.subprocess.Process) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(600):
            if process.returncode is not None:
                break
            try:
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            assert response.status_code == 200
            return response.text
    raise AssertionError(f"nothing answered on the worker's metrics port {port}")


async def test_worker_process_serves_metrics_and_a_busy_port_is_one_line(
    settings, temporal, store, sink: HttpSink, make_service, make_rule, unique
):
    queue = f"{settings.task_queue}-{unique}"
    port = free_port()
    env = hub_env(settings, task_queue=queue) | {"HUB_METRICS_PORT": str(port)}
    process = await spawn_worker(env, stderr=asyncio.subprocess.PIPE)
    try:
        service = await make_service()
        await make_rule(f"{unique}.w", service, endpoint="/w")
        await wait_for_metrics(port, process)
        own = settings.model_copy(update={"task_queue": queue})
        async with HubClient.connect(own, temporal=temporal, store=store) as hub:
            emitted = await hub.emit(f"{unique}.w", {}, wait=True)
        assert emitted.result.outcome is Outcome.DELIVERED
        text = await wait_for_metrics(port, process)

        busy = await spawn_worker(
            env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(busy.communicate(), 30)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 40)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await ensure_schedules(temporal, settings)

    assert process.returncode == 0 and b"Traceback" not in stderr, stderr.decode()
    samples = parse_metrics(text)
    labels = {("service", service.name), ("transport", "http")}
    assert samples[("hub_deliveries_total", frozenset(labels | {("outcome", "delivered")}))] == 1
    assert (
        samples[("hub_delivery_attempts_total", frozenset(labels | {("status_class", "2xx")}))] == 1
    )
    assert samples[("hub_store_up", frozenset())] == 1
    assert any(name == "temporal_worker_task_slots_available" for name, _ in samples)

    assert busy.returncode == 1
    assert out == b""
    [line] = err.decode().splitlines()
    assert line.startswith(f"error: HUB_METRICS_PORT {port} is in use on 127.0.0.1: "), line


def test_a_port_that_cannot_be_bound_names_itself():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(MetricsPortError, match=f"^HUB_METRICS_PORT {port} is in use"):
            bind_metrics_socket("127.0.0.1", port)
    with pytest.raises(MetricsPortError, match=re.escape("PORT 1 on 192.0.2.1 cannot be used")):
        bind_metrics_socket("192.0.2.1", 1)


def test_the_received_outcomes_are_the_apis():
    assert EMIT_OUTCOMES == API_EMIT_OUTCOMES
