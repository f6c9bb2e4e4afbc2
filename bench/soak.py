"""The hub's soak: many events through the hub while faults are injected, then a count.

    .venv/bin/python bench/soak.py [--events 100000] [--fault-every 30] [--rate 30]
                                   [--workers 1] [--seed 1] [--keep]

Starts everything it breaks as processes of its own: a PostgreSQL cluster (initdb + postgres
on a free port), a Temporal dev server with a database file (so that its state survives a
restart), ``python worker.py`` processes on a task queue of their own, and an HTTP sink
(``bench/soak_sink.py``) that records every request. A producer emits events through
``HubClient`` at --rate per second and retries an emit that fails (database down, Temporal
down), as a producer would. Every --fault-every seconds one fault is injected, in turn:

  postgres  PostgreSQL stopped (fast shutdown) for 10-20 s, then started again
  temporal  the Temporal dev server stopped for 3-8 s, then started on the same port and file
  kill9     SIGKILL of the worker; a new one is started at once
  sigterm   SIGTERM of the worker (graceful shutdown); a new one is started at once

Once every event has been emitted, the faults stop and the soak waits until every workflow
has closed, then counts what the sink received against what the hub accepted. It prints ONE
JSON line on stdout; progress goes to stderr. A first SIGINT or SIGTERM stops the emitting
early (``stopped_early`` in the figures); the soak then drains and counts as usual. A second
one aborts it; everything it started is stopped either way. Not a test: run it by hand.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from itertools import cycle
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from hub.client import HubClient
from hub.config import Settings
from hub.core.models import RuleIn, ServiceIn
from hub.runtime.children import parent_death_signal
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import (
    DevStackError,
    TemporalDevServer,
    free_port,
    port_in_use,
    wait_for_port,
)
from hub.store import Store, migrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.faults.servers
from bench.run import git_commit
from tests.faults.servers import OwnPostgres

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
FAULTS = ("postgres", "temporal", "kill9", "sigterm")
EVENT = "soak.order"
ENDPOINT = "/soak"
TEMPLATE = '{"event_id": {{id}}, "n": {{data.n}}}'
WORKFLOW = "DispatchEventWorkflow"
OUTCOMES = ("delivered", "dead_lettered", "partial", "pending", "no_match")
EMIT_TIMEOUT = 15.0
READY_TIMEOUT = 90.0
TEMPORAL_START_TIMEOUT = 120.0
STOP_TIMEOUT = 25.0  # a worker waits up to 20 s for its running activities

_began = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds only the JSON line."""
    print(f"[{time.monotonic() - _began:8.1f}s] {message}", file=sys.stderr, flush=True)


class Workers:
    """``python worker.py`` processes; one is active, others may be draining after SIGTERM."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.active: list[subprocess.Popen[bytes]] = []
        self.draining: list[subprocess.Popen[bytes]] = []
        self.started = 0
        self.unplanned_exits = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        with (self.logs / f"worker-{self.started}.log").open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "worker.py"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
        self.active.append(process)
        return process

    async def ready(self) -> None:
        """Wait until the first worker says it polls its queue."""
        log = self.logs / "worker-1.log"
        deadline = time.monotonic() + READY_TIMEOUT
        while "worker on task queue" not in log.read_text(errors="replace"):
            if self.active[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.2)

    def replace(self, sig: signal.Signals) -> None:
        """Signal the oldest active worker and start its successor at once."""
        if not self.active:  # the last one exited by itself; the supervisor replaces it
            return
        victim = self.active.pop(0)
        with contextlib.suppress(ProcessLookupError):
            victim.send_signal(sig)
        self.draining.append(victim)
        self.start()

    async def supervise(self) -> None:
        """Reap the signalled workers; replace an active one that exited by itself."""
        while True:
            self.draining = [p for p in self.draining if p.poll() is None]
            for process in [p for p in self.active if p.poll() is not None]:
                self.unplanned_exits += 1
                say(f"worker {process.pid} exited by itself ({process.returncode}); replacing it")
                self.active.remove(process)
                await asyncio.sleep(2)  # a worker that cannot start should not spin
                self.start()
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        everyone = [p for p in self.active + self.draining if p.poll() is None]
        for process in everyone:
            process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(_stop_all, everyone)

    def tracebacks(self) -> dict[str, int]:
        """Tracebacks in the workers' logs, by what logged them (the line before each)."""
        found: Counter[str] = Counter()
        for log in self.logs.glob("worker-*.log"):
            lines = log.read_text(errors="replace").splitlines()
            for before, line in zip(["", *lines], lines, strict=False):
                if line.startswith("Traceback"):
                    found[_traceback_source(before)] += 1
        return dict(found)


def _traceback_source(line: str) -> str:
    """``asyncpg.pool``, ``activity record_attempt failed``, or the start of the line."""
    if "Completing activity as failed" in line and "'activity_type': '" in line:
        kind = line.split("'activity_type': '")[1].split("'")[0]
        return f"activity {kind} failed"
    words = line.split()
    return words[3].rstrip(":") if len(words) > 3 else line[:80]


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Wait for each SIGTERMed process in turn; SIGKILL any still running at the deadline."""
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Producer:
    """Emits events at a steady rate through HubClient; retries each until it is accepted."""

    def __init__(self, hub: HubClient, run: str, give_up: float, halt: asyncio.Event) -> None:
        self.hub = hub
        self.halt = halt  # set: emit no more events (those in flight are still retried)
        self.run = run
        self.give_up = give_up
        self.emitted = 0
        self.accepted: set[str] = set()
        self.joined = 0  # accepted by finding the workflow that an earlier try had started
        self.unmatched = 0
        self.abandoned = 0
        self.errors: Counter[str] = Counter()
        self.pending = 0

    def event_id(self, n: int) -> str:
        return f"soak-{self.run}-{n}"

    async def emit(self, n: int) -> None:
        event_id, began, pause = self.event_id(n), time.monotonic(), 0.25
        try:
            while True:
                try:
                    emitted = await asyncio.wait_for(
                        self.hub.emit(EVENT, {"n": n}, event_id=event_id), EMIT_TIMEOUT
                    )
                except Exception as err:  # what a producer retries: 503s, timeouts, RPC errors
                    self.errors[type(err).__name__] += 1
                else:
                    if not emitted.matched:
                        self.unmatched += 1
                    else:
                        self.accepted.add(event_id)
                        self.joined += int(emitted.duplicate)
                    return
                if time.monotonic() - began > self.give_up:
                    self.abandoned += 1
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        finally:
            self.pending -= 1

    async def produce(self, count: int, rate: float, max_pending: int) -> float:
        """Emit count events at rate/s (at most max_pending unanswered); the seconds taken."""
        gate = asyncio.Semaphore(max_pending)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        for n in range(count):
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, start + n / rate - time.monotonic())
                await asyncio.wait_for(self.halt.wait(), wait)
            if self.halt.is_set():
                break
            await gate.acquire()
            self.emitted += 1
            self.pending += 1
            task = asyncio.create_task(self.emit(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _: gate.release())
        while tasks:
            await asyncio.gather(*list(tasks))
        return time.monotonic() - start


async def start_temporal(server: TemporalDevServer) -> None:
    """Spawn the server, and wait in a thread until it listens: a large database file takes
    a while to open, and the event loop goes on meanwhile."""
    process = server.spawn()
    try:
        await asyncio.to_thread(
            wait_for_port, server.port, server.host, TEMPORAL_START_TIMEOUT, process
        )
    except DevStackError:
        await asyncio.to_thread(server.stop)
        raise


class Faults:
    """Injects one fault every ``every`` seconds, in turn, until told to stop."""

    def __init__(
        self,
        postgres: OwnPostgres,
        temporal: TemporalDevServer,
        workers: Workers,
        every: float,
        rng: random.Random,
    ) -> None:
        self.postgres = postgres
        self.temporal = temporal
        self.workers = workers
        self.every = every
        self.rng = rng
        self.injected: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.times: list[tuple[float, str]] = []  # (time.time() at the start, kind)
        self.stop = asyncio.Event()

    async def run(self) -> None:
        kinds = cycle(FAULTS)
        start = time.monotonic()
        for k in range(1, sys.maxsize):
            with contextlib.suppress(TimeoutError):
                wait = max(0.0, start + k * self.every - time.monotonic())
                await asyncio.wait_for(self.stop.wait(), wait)
            if self.stop.is_set():
                return
            kind = next(kinds)
            self.times.append((time.time(), kind))
            self.injected[kind] += 1
            try:
                await self.inject(kind)
            except Exception as err:  # the soak goes on: bring the servers back and count it
                say(f"fault: {kind} went wrong ({type(err).__name__}: {err}); restoring")
                self.errors[kind] += 1
                await self.restore()

    async def restore(self) -> None:
        """Start PostgreSQL and Temporal again if they are not running, until they answer."""
        while True:
            try:
                if self.postgres.process is None or self.postgres.process.poll() is not None:
                    self.postgres.start()
                await self.postgres.ready()
                process = self.temporal.process
                if process is None or process.poll() is not None:
                    await start_temporal(self.temporal)
                return
            except Exception as err:
                say(f"restoring failed ({type(err).__name__}: {err}); trying again in 5 s")
                await asyncio.sleep(5)

    async def inject(self, kind: str) -> None:
        if kind == "postgres":
            down = self.rng.uniform(10, 20)
            say(f"fault: PostgreSQL stopped for {down:.1f}s")
            await asyncio.to_thread(self.postgres.stop)
            await asyncio.sleep(down)
            self.postgres.start()
            await self.postgres.ready()
        elif kind == "temporal":
            down = self.rng.uniform(3, 8)
            say(f"fault: Temporal server stopped for {down:.1f}s")
            await asyncio.to_thread(self.temporal.stop)
            await asyncio.sleep(down)
            await start_temporal(self.temporal)
        else:
            say(f"fault: {kind} of the worker")
            self.workers.replace(signal.SIGKILL if kind == "kill9" else signal.SIGTERM)
        say(f"fault: {kind} over")


class Sink:
    """bench/soak_sink.py as a child process, and a client of its control paths."""

    def __init__(self, logs: Path, reply_delay: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with (logs / "sink.log").open("ab") as out:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, str(BENCH / "soak_sink.py"), "--port", str(self.port)),
                    *("--reply-delay", str(reply_delay)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
        self.client = httpx.AsyncClient(base_url=self.url, timeout=120)

    async def ready(self) -> None:
        deadline = time.monotonic() + 20
        while not port_in_use(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sink did not start")
            await asyncio.sleep(0.1)

    async def count(self) -> int:
        return int((await self.client.get("/_count")).json())

    async def records(self) -> list[list[Any]]:
        return list((await self.client.get("/_records")).json())

    async def close(self) -> None:
        await self.client.aclose()
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()


async def wait_closed(temporal: Client, queue: str, accepted: int, stall: float) -> int:
    """Wait until every accepted event's workflow has closed; the number still running."""
    base = f"WorkflowType='{WORKFLOW}' AND TaskQueue='{queue}'"
    last, since = -1, time.monotonic()
    while True:
        try:
            total = (await temporal.count_workflows(base)).count
            running = (
                await temporal.count_workflows(f"{base} AND ExecutionStatus='Running'")
            ).count
        except RPCError as err:
            say(f"counting workflows failed ({err}); asking again")
            await asyncio.sleep(2)
            continue
        if total >= accepted and running == 0:
            return 0
        if running != last:
            last, since = running, time.monotonic()
            say(f"{total} workflows, {running} still running")
        elif time.monotonic() - since > stall:
            say(f"no workflow closed for {stall:g}s; counting with {running} still running")
            return running
        await asyncio.sleep(2)


async def outcomes(temporal: Client, queue: str) -> dict[str, Any]:
    """Closed workflows by status and by the hub's outcome search attribute."""
    base = f"WorkflowType='{WORKFLOW}' AND TaskQueue='{queue}'"
    by_outcome = {}
    for outcome in OUTCOMES:
        counted = await temporal.count_workflows(f"{base} AND HubOutcome='{outcome}'")
        if counted.count:
            by_outcome[outcome] = counted.count
    not_completed = await temporal.count_workflows(f"{base} AND ExecutionStatus!='Completed'")
    return {"outcomes": by_outcome, "workflows_not_completed": not_completed.count}


def tally(
    records: list[list[Any]],
    accepted: set[str],
    logged: set[tuple[str, int]],
    faults: list[tuple[float, str]],
) -> dict[str, Any]:
    """What the sink received against what the hub accepted and logged."""
    per_event: Counter[str] = Counter()
    per_send: Counter[tuple[str, int]] = Counter()
    misattributed = 0
    duplicated_after: Counter[str] = Counter()
    for at, key, attempt, event_id, body_id in sorted(records):
        per_event[event_id] += 1
        per_send[(key, attempt)] += 1
        if body_id != event_id or key.rpartition("/")[0] != event_id:
            misattributed += 1
        if per_event[event_id] > 1:  # a copy: blame the last fault that began before it
            duplicated_after[_last_fault(faults, at)] += 1
    delivered = accepted & per_event.keys()
    duplicated = sum(1 for event_id in delivered if per_event[event_id] > 1)
    return {
        "delivered": len(delivered),
        "lost": len(accepted - per_event.keys()),
        "duplicated": duplicated,
        "duplicate_rate": round(duplicated / len(delivered), 5) if delivered else None,
        "duplicate_requests": sum(n - 1 for n in per_event.values() if n > 1),
        "duplicate_requests_after_fault": dict(duplicated_after),
        "same_attempt_sent_twice": sum(1 for n in per_send.values() if n > 1),
        "misattributed": misattributed,
        "sends_without_log_row": len(per_send.keys() - logged),
        "received_not_accepted": len(per_event.keys() - accepted),
        "requests": len(records),
        "max_attempt_seen": max((r[2] for r in records), default=0),
    }


def _last_fault(faults: list[tuple[float, str]], at: float) -> str:
    before = [kind for started, kind in faults if started <= at]
    return before[-1] if before else "none"


async def database_figures(dsn: str) -> tuple[set[tuple[str, int]], dict[str, Any]]:
    """The logged (delivery id, attempt) pairs; log rows by status, DLQ rows and reasons."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT delivery_id, attempt FROM delivery_log WHERE direction = 'out'"
        )
        statuses = await conn.fetch(
            "SELECT status, count(*) AS n FROM delivery_log WHERE direction = 'out' GROUP BY 1"
        )
        dead = await conn.fetch("SELECT error FROM dlq LIMIT 5")
        dead_count = await conn.fetchval("SELECT count(*) FROM dlq")
    finally:
        await conn.close()
    for row in dead:
        say(f"DLQ row: {row['error']}")
    figures = {
        "dlq_rows": int(dead_count),
        "log_rows_by_status": {r["status"]: int(r["n"]) for r in statuses},
    }
    return {(r["delivery_id"], int(r["attempt"])) for r in rows}, figures


# the run


async def progress(producer: Producer, sink: Sink, faults: Faults, every: float = 15.0) -> None:
    while True:
        await asyncio.sleep(every)
        arrived: int | str = "?"
        with contextlib.suppress(httpx.HTTPError):
            arrived = await sink.count()
        say(
            f"emitted {producer.emitted}, accepted {len(producer.accepted)}, "
            f"emits pending {producer.pending}, requests at the sink {arrived}, "
            f"faults {dict(faults.injected)}"
        )


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of ``python worker.py``: ours, minus HUB_*, plus the soak's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "TEMPORAL_"))}
    assert settings.database_url is not None and settings.secret_key is not None
    return env | {
        "HUB_DATABASE_URL": settings.database_url,
        "HUB_TEMPORAL_ADDRESS": settings.resolved_temporal_address,
        "HUB_TASK_QUEUE": settings.task_queue,
        "HUB_SECRET_KEY": settings.secret_key.get_secret_value(),
        "HUB_EGRESS_ALLOW": settings.egress_allow,
    }


async def drive(
    args: argparse.Namespace,
    hub: HubClient,
    sink: Sink,
    faults: Faults,
    settings: Settings,
    halt: asyncio.Event,
) -> dict[str, Any]:
    """Emit with faults, wait for every workflow to close, count."""
    producer = Producer(hub, secrets.token_hex(4), args.give_up, halt)
    fault_task = asyncio.create_task(faults.run())
    helpers = [
        asyncio.create_task(faults.workers.supervise()),
        asyncio.create_task(progress(producer, sink, faults)),
    ]
    began = time.monotonic()
    try:
        emit_s = await producer.produce(args.events, args.rate, args.max_pending)
        say(f"{producer.emitted} events emitted in {emit_s:.0f}s; faults stop")
        faults.stop.set()
        await fault_task
        queue = settings.task_queue
        running = await wait_closed(hub.temporal, queue, len(producer.accepted), args.stall_seconds)
        closed_s = time.monotonic() - began
        records = await sink.records()
        logged, figures = await database_figures(settings.database_url or "")
        figures |= await outcomes(hub.temporal, queue)
    finally:
        for task in [fault_task, *helpers]:
            task.cancel()
        await asyncio.gather(fault_task, *helpers, return_exceptions=True)
    counted = tally(records, producer.accepted, logged, faults.times)
    return {
        "events": args.events,
        "stopped_early": halt.is_set(),
        "emitted": producer.emitted,
        "accepted": len(producer.accepted),
        **counted,
        "dlq_rows": figures.pop("dlq_rows"),
        "faults": dict(faults.injected),
        "faults_gone_wrong": dict(faults.errors),
        "duplicates_per_fault": per_fault(
            counted["duplicate_requests_after_fault"], faults.injected
        ),
        "events_per_s": round(counted["delivered"] / closed_s, 2),
        "emit_s": round(emit_s, 1),
        "closed_s": round(closed_s, 1),
        "still_running": running,
        **figures,
        "emit_errors": dict(producer.errors),
        "emit_found_started": producer.joined,
        "unmatched": producer.unmatched,
        "abandoned": producer.abandoned,
        "workers_started": faults.workers.started,
        "worker_unplanned_exits": faults.workers.unplanned_exits,
        "worker_log_tracebacks": faults.workers.tracebacks(),
    }


def per_fault(duplicates: dict[str, int], injected: Counter[str]) -> dict[str, float]:
    """Duplicate requests per fault of each kind (those arriving after it, before the next)."""
    return {kind: round(duplicates.get(kind, 0) / n, 2) for kind, n in injected.items() if n}


async def soak(args: argparse.Namespace, tmp: Path, halt: asyncio.Event) -> dict[str, Any]:
    """Start the servers the soak owns, drive it, stop them all (in reverse order)."""
    postgres = OwnPostgres(tmp / "pg")
    await asyncio.to_thread(postgres.init)
    async with contextlib.AsyncExitStack() as stack:
        postgres.start()
        stack.callback(postgres.stop)
        await postgres.ready()
        await migrate(postgres.url)
        server = TemporalDevServer(
            port=free_port(),
            db_file=tmp / "temporal" / "temporal.db",
            log_file=tmp / "temporal.log",
        )
        (tmp / "temporal").mkdir(mode=0o700)
        stack.callback(server.stop)
        await start_temporal(server)
        sink = Sink(tmp, args.reply_delay)
        stack.push_async_callback(sink.close)
        await sink.ready()
        settings = Settings(
            database_url=postgres.url,
            temporal_address=server.address,
            task_queue=f"hub-soak-{secrets.token_hex(4)}",
            secret_key=Fernet.generate_key().decode(),
            egress_allow="127.0.0.1/32",  # the sink
        )
        store = await stack.enter_async_context(Store.open(postgres.url, max_size=4))
        service = await store.services.create(
            ServiceIn(name="soak-sink", base_url=sink.url, backoff=0.5)
        )
        await store.rules.create(
            RuleIn(event=EVENT, service=service.name, endpoint=ENDPOINT, template=TEMPLATE)
        )
        workers = Workers(worker_env(settings), tmp)
        stack.push_async_callback(workers.stop)
        for _ in range(args.workers):
            workers.start()
        await workers.ready()
        say(f"stack up: PostgreSQL :{postgres.port}, Temporal {server.address}, sink {sink.url}")
        temporal = await connect_temporal(settings)
        hub = await stack.enter_async_context(
            HubClient.connect(settings, temporal=temporal, store=store)
        )
        faults = Faults(postgres, server, workers, args.fault_every, random.Random(args.seed))
        return await drive(args, hub, sink, faults, settings, halt)
    raise AssertionError("unreachable")


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=100_000, help="events to emit")
    parser.add_argument("--rate", type=float, default=30.0, help="events emitted per second")
    parser.add_argument("--fault-every", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--reply-delay", type=float, default=0.05, help="the sink's answer time")
    parser.add_argument("--max-pending", type=int, default=2000, help="unanswered emits at most")
    parser.add_argument("--give-up", type=float, default=600.0, help="seconds to retry an emit")
    parser.add_argument(
        "--stall-seconds", type=float, default=600.0, help="stop waiting if no workflow closes"
    )
    parser.add_argument("--seed", type=int, default=1, help="for the outage lengths")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    args = parser.parse_args(None if argv is None else list(argv))
    if min(args.events, args.workers, args.max_pending) < 1 or args.rate <= 0:
        parser.error("--events, --workers, --max-pending and --rate must be positive")
    if args.fault_every < 25:
        parser.error("--fault-every must leave room for a 20 s outage: at least 25")
    return args


async def main_async(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """soak() with a first SIGINT or SIGTERM stopping the emitting early (the run then drains
    and counts as usual), and a second one cancelling it all (cleanup still runs)."""
    task = asyncio.current_task()
    assert task is not None
    halt = asyncio.Event()

    def on_signal() -> None:
        if halt.is_set():
            task.cancel()
            return
        halt.set()
        say("stopping early: no more events; draining, then counting (signal again to abort)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().add_signal_handler(sig, on_signal)
    return await soak(args, tmp, halt)


def quiet_logs(path: Path) -> None:
    """Our own processes' log lines (asyncpg, the hub's clients, Temporal's core, which
    writes to stdout by default) go to a file: stdout holds only the JSON line."""
    logging.basicConfig(
        filename=path,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    core = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core)))


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-soak-"))
    tmp.chmod(0o711)  # run as root, PostgreSQL runs as a user of its own that must pass
    quiet_logs(tmp / "soak.log")
    began = time.perf_counter()
    say(f"logs under {tmp}")
    keep = True  # the logs explain a failure: keep them unless the run succeeded
    try:
        figures = asyncio.run(main_async(args, tmp))
        keep = args.keep
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; everything started has been stopped")
        return 130
    finally:
        if keep:
            say(f"logs kept under {tmp}")
        else:
            subprocess.run(["rm", "-rf", str(tmp)], check=False)
    figures |= {
        "wall_s": round(time.perf_counter() - began, 1),
        "rate": args.rate,
        "fault_every": args.fault_every,
        "workers": args.workers,
        "reply_delay": args.reply_delay,
        "seed": args.seed,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "commit": git_commit(),
    }
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
