"""Fault drills: RabbitMQ losing a binding, a queue, the worker's connection, and itself.

The first drills use the real broker on 127.0.0.1:5672 and the session's worker. The
connection is closed from the broker's side with ``rabbitmqctl close_connection`` (only the
worker's own connection, found by its name, so nothing else on the broker is touched). Where
rabbitmqctl cannot be used, the drill drops the worker's socket from our side instead, which
aio-pika sees the same way: a connection lost under it.

The restart drill stops and starts a RabbitMQ node of its own (free ports, a temporary
directory), publishing through a pool of its own, so the shared broker is never restarted.

Each drill counts the messages received against those sent: none lost, none duplicated.
"""

import asyncio
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from hub.core.models import Outcome, Service
from hub.runtime.embedded import free_port, port_in_use
from hub.transport.amqp import AmqpCall, AmqpPool, AmqpTarget
from hub.transport.egress import EgressGuard
from tests.test_amqp import (  # noqa: F401 (broker_up and channel: fixtures, used by name)
    BROKER,
    broker_up,
    channel,
    drain,
    fresh_queue,
)

RABBITMQCTL = shutil.which("rabbitmqctl")


@dataclass
class Tally:
    """What was emitted and what the queue received, by event id."""

    emitted: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)

    def take(self, messages: list) -> None:
        self.received += [message.headers["x-hub-event-id"] for message in messages]

    @property
    def lost(self) -> list[str]:
        return sorted(set(self.emitted) - set(self.received))

    @property
    def duplicated(self) -> list[str]:
        return sorted({i for i in self.received if self.received.count(i) > 1})

    @property
    def unexpected(self) -> list[str]:
        return sorted(set(self.received) - set(self.emitted))

    def summary(self) -> str:
        return (
            f"emitted {len(self.emitted)}, received {len(self.received)},"
            f" lost {len(self.lost)}, duplicated {len(self.duplicated)}"
        )


async def emit_all(hub, tally: Tally, event: str, ids: list[str]) -> None:
    """Emit the events concurrently and wait for each; every one must be delivered."""
    results = await asyncio.gather(
        *(hub.emit(event, {"id": i}, event_id=i, wait=True) for i in ids)
    )
    tally.emitted += ids
    outcomes = {r.event_id: r.result.outcome for r in results}
    assert all(o is Outcome.DELIVERED for o in outcomes.values()), outcomes


async def read_all(queue, expected: int) -> list:
    """Everything in the queue: the expected messages, plus any extra within a second."""
    return await drain(queue, expected + 1, seconds=1.0)


# A lost binding, a lost queue


async def test_a_lost_binding_and_a_lost_queue_are_put_back_within_the_attempt(
    hub,
    store,
    channel,  # noqa: F811 (the fixture imported above)
    make_service,
    make_rule,
    unique,
):
    name, key = f"{unique}-bound", f"{unique}.key"
    service = await make_service(
        type="amqp",
        base_url=f"{BROKER}?exchange=amq.direct&routing_key={key}&queue_declare={name}",
        max_attempts=2,
    )
    await make_rule(f"{unique}.evt", service)
    tally = Tally()

    # The first delivery declares the queue and binds it; the worker's pool remembers both.
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-1"])
    queue = await channel.declare_queue(name, durable=True, passive=True)
    tally.take(await read_all(queue, 1))

    # Fault 1: the binding goes behind the worker's back.
    await queue.unbind("amq.direct", key)
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-2", f"{unique}-3"])
    tally.take(await read_all(queue, 2))

    # Fault 2: the whole queue goes (its binding with it).
    await queue.delete(if_unused=False, if_empty=False)
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-4", f"{unique}-5"])
    queue = await channel.declare_queue(name, durable=True, passive=True)
    tally.take(await read_all(queue, 2))
    await queue.delete(if_unused=False, if_empty=False)

    print(f"\nlost binding, lost queue: {tally.summary()}")
    assert (tally.lost, tally.duplicated, tally.unexpected) == ([], [], [])
    assert len(tally.received) == len(tally.emitted) == 5
    # Put back within the first attempt: no retry, no failed attempt in the log.
    for event_id in tally.emitted:
        rows = await store.log.recent(event_id=event_id)
        assert [(r.attempt, r.status.value, r.error) for r in rows] == [(1, "ok", None)]
    assert await store.dlq.recent(event=f"{unique}-2") == []


# The worker's connection, closed by the broker


async def rabbitmqctl(*args: str) -> str:
    assert RABBITMQCTL is not None
    process = await asyncio.create_subprocess_exec(
        RABBITMQCTL,
        "-q",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    if process.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


async def broker_connections(connection_name: str) -> dict[str, str]:
    """The connections named so, as the broker knows them: {Erlang pid: "client:port ->
    server:port"} (close_connection takes the pid, in the table format's spelling)."""
    rows = json.loads(
        await rabbitmqctl("list_connections", "name", "client_properties", "--formatter", "json")
    )
    wanted = ["connection_name", "longstr", connection_name]
    names = {row["name"] for row in rows if wanted in row["client_properties"]}
    table = await rabbitmqctl("list_connections", "--no-table-headers", "pid", "name")
    pairs = [line.split("\t", 1) for line in table.splitlines() if "\t" in line]
    return {pid: name for pid, name in pairs if name in names}


@pytest.fixture(scope="session")
async def broker_admin(broker_up) -> bool:  # noqa: F811 (the fixture imported above)
    """Whether rabbitmqctl can list (and so close) this broker's connections here."""
    if RABBITMQCTL is None or os.environ.get("HUB_TEST_NO_RABBITMQCTL"):
        return False
    try:
        await rabbitmqctl("list_connections", "name")
    except (RuntimeError, OSError, TimeoutError):
        return False
    return True


async def close_worker_connection(worker, broker_admin: bool, connection_name: str) -> list[str]:
    """Close the worker's connection to the broker; the broker's names of what was closed."""
    if broker_admin:
        connections = await broker_connections(connection_name)
        for pid in connections:
            await rabbitmqctl("close_connection", pid, "fault drill: connection closed")
        return list(connections.values())
    # Last resort: drop the socket under the robust connection, from our side.
    dropped = []
    for broker in worker.amqp._brokers.values():
        transport = broker.connection.transport
        if transport is not None:
            await transport.connection.close(ConnectionResetError("fault drill: link lost"))
            dropped.append(str(broker.connection))
    return dropped


async def reconnected(broker_admin: bool, connection_name: str, closed: list[str]) -> None:
    """Wait until the worker is connected again (a connection the broker did not close)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not broker_admin:
            await asyncio.sleep(1.0)
            return
        if set((await broker_connections(connection_name)).values()) - set(closed):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker did not reconnect within 15 s (closed: {closed})")


async def test_a_connection_closed_by_the_broker_is_reopened_and_nothing_is_lost(
    hub,
    store,
    worker,
    broker_admin,
    channel,  # noqa: F811 (the fixture imported above)
    make_service,
    make_rule,
    unique,
):
    queue = await fresh_queue(channel, f"{unique}-after-close")
    service = await make_service(
        type="amqp", base_url=f"{BROKER}?routing_key={queue.name}", max_attempts=5, timeout=8
    )
    await make_rule(f"{unique}.evt", service)
    connection_name = f"temporal-hub worker {os.getpid()}"  # hub.engine.worker names it so
    how = "rabbitmqctl close_connection" if broker_admin else "socket dropped from our side"
    tally = Tally()
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-0-{i}" for i in range(5)])
    opened = worker.amqp.connections_opened

    # 1: closed while idle; aio-pika reconnects at once, before the next events.
    closed = await close_worker_connection(worker, broker_admin, connection_name)
    assert closed, "the worker has no connection to close"
    started = time.perf_counter()
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-1-{i}" for i in range(20)])
    print(f"\nclosed while idle ({how}): 20 events in {time.perf_counter() - started:.2f} s")

    # 2: closed again as soon as it is back: aio-pika waits out its reconnect interval
    # (5 s), so these events meet a connection that is down, as during a broker restart.
    await reconnected(broker_admin, connection_name, closed)
    closed = await close_worker_connection(worker, broker_admin, connection_name)
    started = time.perf_counter()
    await emit_all(hub, tally, f"{unique}.evt", [f"{unique}-2-{i}" for i in range(20)])
    print(f"closed while down ({how}): 20 events in {time.perf_counter() - started:.2f} s")
    await reconnected(broker_admin, connection_name, closed)

    tally.take(await read_all(queue, len(tally.emitted)))
    attempts = {i: {r.attempt for r in await store.log.recent(event_id=i)} for i in tally.emitted}
    retried = sorted(i for i, numbers in attempts.items() if numbers != {1})
    print(f"connection closed twice: {tally.summary()}, retried {len(retried)}")
    assert (tally.lost, tally.duplicated, tally.unexpected) == ([], [], [])
    assert len(tally.received) == len(tally.emitted) == 45
    # Each waited for the connection within its attempt instead of failing it.
    assert retried == []
    # aio-pika's robust connection came back by itself: the pool opened no other one.
    assert worker.amqp.connections_opened == opened


# The broker restarted


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # not the wrapper that su's
RABBITMQ_INSTALLED = RABBITMQ_SERVER.exists()


class OwnRabbit:
    """A RabbitMQ node of the test's own on free ports, with its data in ``directory``: it
    can be stopped and started again, its durable queues and persistent messages kept."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self._launcher: asyncio.subprocess.Process | None = None
        (directory / "home").mkdir(parents=True, exist_ok=True)
        (directory / "enabled_plugins").write_text("[].\n")  # no management listener

    def _env(self) -> dict[str, str]:
        d = self.directory
        return os.environ | {
            "HOME": str(d / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"hubdrill{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
        }

    async def start(self, seconds: float = 60) -> None:
        (self.directory / "pid").unlink(missing_ok=True)
        self._launcher = await asyncio.create_subprocess_exec(
            str(RABBITMQ_SERVER),
            env=self._env(),
            stdout=(self.directory / "out.log").open("ab"),
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + seconds
        while not port_in_use(self.port):
            if self._launcher.returncode is not None or time.monotonic() > deadline:
                log = (self.directory / "out.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"RabbitMQ did not start on {self.port}:\n{log}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """A clean shutdown (SIGTERM to the Erlang VM), as a broker restart begins."""
        if self._launcher is None or self._launcher.returncode is not None:
            return
        pid_file = self.directory / "pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        else:
            self._launcher.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._launcher.wait(), 30)
        except TimeoutError:
            os.killpg(self._launcher.pid, signal.SIGKILL)
            await self._launcher.wait()


@pytest.fixture
async def own_rabbit(tmp_path):
    # .ci/run needs RabbitMQ anyway: a missing server is a broken machine, not a pass.
    assert RABBITMQ_INSTALLED, f"{RABBITMQ_SERVER} is missing: install rabbitmq-server"
    rabbit = OwnRabbit(tmp_path / "rabbit")
    await rabbit.start()
    try:
        yield rabbit
    finally:
        await rabbit.stop()


def amqp_service(url: str) -> Service:
    now = datetime.now(UTC)
    return Service(
        id=1, name="drill", type="amqp", base_url=url, timeout=3, created_at=now, updated_at=now
    )


async def test_a_broker_restart_is_survived_by_the_same_pool(settings, own_rabbit):
    url = f"{own_rabbit.url}?queue_declare=drill"
    pool = AmqpPool(EgressGuard(settings.egress_policy), name="hub restart drill")
    sent, failed = [], []

    async def publish(n: int) -> bool:
        message_id = f"m{n}"
        message = aio_pika.Message(
            b"{}", message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        target = AmqpTarget.from_url(url)
        call = AmqpCall(pool, target, "drill", message, amqp_service(url), url)
        outcome = await call.send()
        if outcome.error is None:
            sent.append(message_id)
        else:
            failed.append(outcome.error)
            assert not outcome.healthy and outcome.retryable, outcome
        return outcome.error is None

    try:
        assert await publish(0)
        await own_rabbit.stop()
        assert not await publish(1)  # the broker is down: a failed attempt, not a crash
        started = time.perf_counter()
        restart = asyncio.ensure_future(own_rabbit.start())
        n = 2
        while not await publish(n):  # the next attempts, as Temporal would make them
            n += 1
            assert time.perf_counter() - started < 45, failed
            await asyncio.sleep(0.5)
        back = time.perf_counter() - started
        await restart
        assert all([await publish(i) for i in range(100, 110)])
        assert pool.connections_opened == 1  # aio-pika reconnected; no new connection
    finally:
        await pool.close()

    connection = await aio_pika.connect(own_rabbit.url)
    async with connection:
        queue = await (await connection.channel()).get_queue("drill")
        received = [m.message_id for m in await drain(queue, len(sent) + 1, seconds=1.0)]
    tally = Tally(emitted=sent, received=received)
    print(
        f"\nbroker restart: publishing again {back:.1f} s after the start began;"
        f" {len(failed)} failed attempts while down; {tally.summary()}"
    )
    assert (tally.lost, tally.duplicated, tally.unexpected) == ([], [], [])
    assert len(sent) == 12  # the one before the restart survived it (durable, persistent)
