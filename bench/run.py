"""The hub's end-to-end benchmark: throughput, latency, fan-out and refusals, on one machine.

    .venv/bin/python bench/run.py [-n 1000] [--rounds 4] [--workers 1] [--latency-seconds 30]
                                  [--rate 10]
                                  [--concurrency 50] [--aged-events 10000] [--skip PHASE ...]
                                  [--in-process [--no-eager]]
                                  [--temporal-address HOST:PORT] [--dsn postgresql://…]

Starts everything it measures as separate processes, the way production runs them: a Temporal
dev server with a database file and the WAL pragmas (as ``hub dev`` runs it), a fast HTTP
sink, ``python worker.py`` (--workers of them) and a bare-Temporal baseline worker. Creates a
scratch PostgreSQL database and drops it at the end. Phases (each can be skipped):

  latency   on the fresh server: --rate events/s for --latency-seconds (and as many bare
            workflows, interleaved); emit-to-sink-arrival percentiles
  baseline  N bare workflows, one POST each: what Temporal alone manages here
  hub       N events through HubClient.emit, one matching rule each; the two run in
            --rounds alternating blocks (baseline, hub, hub, baseline, ...), so that both
            meet the same drift of a shared machine
  fanout    events matching 5 rules (5 services, one rule each)
  failure   events to a service whose circuit is open: held for its max hold (1 s), then
            dead-lettered, no network call
  aged      events until the server has run --aged-events, then the latency phase again

Prints ONE JSON line on stdout; progress goes to stderr. Not a test: run it by hand.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
from temporalio.client import Client, WorkflowHandle

from hub.client import HubClient
from hub.config import Settings
from hub.core.models import DispatchResult, LogEntryIn, LogStatus, RuleIn, ServiceIn
from hub.engine.worker import running_worker
from hub.runtime.breaker import CircuitBreaker, Permit
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, free_port, port_in_use
from hub.store import Store, migrate

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PHASES = ("latency", "baseline", "hub", "fanout", "failure", "aged")
FANOUT_SERVICES = 5
FANOUT_SHAPE = f"{FANOUT_SERVICES} rules, each to its own service"
TEMPLATE = '{"id": {{data.id}}, "user": "{{data.user}}", "event": "{{name}}"}'
SAMPLE_EVERY = 0.2
RESULT_WAITS = 400
"""Results awaited at once: each is a long poll, and the server refuses a namespace more
than about a thousand ("namespace concurrent poller limit exceeded")."""
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 25.0  # a hub worker waits up to 20 s for running activities
# Lines of a child's log that deserve a look after the run.
# A failed delivery attempt, as the SDK (WARNING + traceback) or the hub (one line) logs it.
ATTEMPT_FAILED = re.compile(
    r"Completing activity as failed|delivery \S+ to \S+, attempt \d+ failed"
)
PROBLEM = re.compile(r"Traceback|\bERROR\b|\bWARN(ING)?\b|\bCRITICAL\b|panic", re.IGNORECASE)

R = TypeVar("R")
_began = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the JSON line."""
    print(f"[{time.monotonic() - _began:7.1f}s] {message}", file=sys.stderr, flush=True)


# processes


class Child:
    """A child process in a session of its own.

    Its own session keeps the terminal's Ctrl+C away from it (the benchmark decides the
    shutdown order) and lets us signal whatever it spawned along with it.
    """

    def __init__(
        self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process = psutil.Process(self.popen.pid)

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the child's process group while the child runs (never a reused id)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def ready(self, marker: str) -> None:
        """Wait until the child writes marker to its log; fail if it exits first."""
        deadline = time.monotonic() + READY_TIMEOUT
        while marker not in self.log.read_text(errors="replace"):
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {READY_TIMEOUT:g}s:\n{self.tail()}")
            await asyncio.sleep(0.1)


class Children:
    """Every process the benchmark starts, so that none outlives it."""

    def __init__(self) -> None:
        self.all: list[Child] = []
        # Idempotent stops of processes that other code started (the Temporal dev server).
        self.cleanups: list[Callable[[], None]] = []

    def start(
        self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
    ) -> Child:
        child = Child(name, cmd, log, env)
        self.all.append(child)
        return child

    async def stop(self, children: Iterable[Child]) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL the group of any that lingers."""
        children = [c for c in children if c.popen.poll() is None]
        for child in children:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if all(c.popen.poll() is not None for c in children):
                break
            await asyncio.sleep(0.1)
        for child in children:
            if child.popen.poll() is None:
                say(f"{child.name} ignored SIGTERM for {STOP_TIMEOUT:g}s; killing it")
                child.signal_group(signal.SIGKILL)
            child.popen.wait()

    def kill_all(self) -> None:
        """The last resort after an error or a second Ctrl+C: SIGKILL every group."""
        for child in self.all:
            child.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(5)
        for cleanup in self.cleanups:
            with contextlib.suppress(Exception):
                cleanup()


# measurements


class Monitor:
    """Samples the peak RSS of each group of processes, and reads their CPU time.

    Besides the fixed groups, ``postgres`` is every local process named postgres (found anew
    at each sample, since backends come and go with connections): the hub's delivery log and
    circuit state cost database CPU too, and on one machine it competes with the rest.
    """

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups
        self.peak_rss: dict[str, int] = dict.fromkeys(groups, 0)
        self._last_cpu: dict[int, float] = {}
        self._postgres: dict[int, psutil.Process] = {}

    def _cpu(self, process: psutil.Process) -> float:
        """User + system seconds of one process (its last reading once it has gone).

        Children are not added: every measured process is a single process (the Temporal
        CLI runs the whole dev server in one), and the benchmark's own children are not its
        cost.
        """
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            self._last_cpu[process.pid] = times.user + times.system
        return self._last_cpu.get(process.pid, 0.0)

    def _find_postgres(self) -> None:
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "postgres" and process.pid not in self._postgres:
                self._postgres[process.pid] = process

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each group, plus ``machine``: every CPU's busy time.

        machine minus the groups is what other programs used meanwhile: noise to report.
        """
        self._find_postgres()
        readings = {name: sum(self._cpu(p) for p in procs) for name, procs in self.groups.items()}
        readings["postgres"] = sum(self._cpu(p) for p in self._postgres.values())
        t = psutil.cpu_times()
        readings["machine"] = (
            t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        )
        return readings

    def sample(self) -> None:
        """Peak RSS of the groups; CPU of postgres backends, before they exit unseen."""
        for name, procs in self.groups.items():
            for process in procs:
                with contextlib.suppress(psutil.Error):
                    self.peak_rss[name] = max(self.peak_rss[name], process.memory_info().rss)
        self._find_postgres()
        for process in self._postgres.values():
            self._cpu(process)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY)


@dataclass
class Deliveries:
    """How a phase's expected requests compare with what the sink received."""

    lost: int
    duplicated: int


def compare(
    records: list[list[Any]], paths: set[str], expected: set[tuple[str, str]]
) -> Deliveries:
    """Lost = expected (path, id) pairs never received; duplicated = extra copies received."""
    seen = Counter((path, rid) for _, path, rid in records if path in paths)
    return Deliveries(
        lost=len(expected - seen.keys()),
        duplicated=sum(n - 1 for n in seen.values() if n > 1),
    )


def per_event(
    before: dict[str, float], after: dict[str, float], events: int, digits: int = 5
) -> dict[str, float]:
    """CPU seconds per event of each group between two readings, and of ``others``.

    others = machine - every measured group: programs outside the benchmark that competed
    for the CPUs meanwhile. Figures from a run where it is large are not comparable.
    """
    spent = {k: after[k] - before[k] for k in after}
    spent["others"] = max(
        0.0, spent["machine"] - sum(v for k, v in spent.items() if k != "machine")
    )
    return {k: round(v / events, digits) for k, v in spent.items()}


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def log_problems(children: list[Child]) -> dict[str, dict[str, int]]:
    """Per child log: failed delivery attempts, and every other suspicious line.

    Failed attempts are logged as warnings (by the SDK with a traceback, or by the hub in one
    line); the failure phase expects one per refused event, so they are counted apart. The
    first few other problems are shown on stderr.
    """
    counts = {}
    for child in children:
        text = child.log.read_text(errors="replace") if child.log.exists() else ""
        failed_attempts, problems = 0, []
        after_failed_attempt = False
        for line in text.splitlines():
            if ATTEMPT_FAILED.search(line):
                failed_attempts += 1
                after_failed_attempt = True
            elif line.startswith("Traceback") and after_failed_attempt:
                after_failed_attempt = False
            elif PROBLEM.search(line):
                problems.append(line)
        counts[child.name] = {"failed_attempts": failed_attempts, "problems": len(problems)}
        for line in problems[:5]:
            say(f"{child.name}: {line[:300]}")
    return counts


# setup


@contextlib.asynccontextmanager
async def scratch_database(server_dsn: str) -> AsyncIterator[str]:
    """A new empty database on the server, dropped on exit whatever happened."""
    name = f"hub_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(server_dsn)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        say(f"dropped database {name}")


class Watchdog:
    """Fails a phase that stops making progress, rather than letting the benchmark hang.

    Temporal retries a workflow task that fails (say, a worker that cannot import its
    workflow code) for ever, so waiting for that workflow's result would never return.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    def progress(self) -> None:
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time() + self.seconds)

    @contextlib.asynccontextmanager
    async def watch(self, phase: str) -> AsyncIterator[None]:
        timeout = asyncio.timeout(self.seconds)
        try:
            async with timeout:
                self._timeout = timeout
                yield
        except TimeoutError:
            if not timeout.expired():
                raise
            raise RuntimeError(
                f"phase {phase}: no workflow started or ended for {self.seconds:g}s;"
                " see the worker log lines above"
            ) from None
        finally:
            self._timeout = None


async def run_all(
    count: int,
    concurrency: int,
    start: Callable[[int], Awaitable[WorkflowHandle[Any, R]]],
    progress: Callable[[], None],
) -> tuple[float, list[R]]:
    """Start count workflows, at most concurrency starts in flight, and await every result.

    Returns the seconds from the first start to the last result, and the results.
    """
    gate = asyncio.Semaphore(concurrency)
    waits = asyncio.Semaphore(RESULT_WAITS)

    async def one(i: int) -> R:
        async with gate:
            handle = await start(i)
        progress()
        async with waits:
            result = await handle.result()
        progress()
        return result

    began = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - began, results


class Bench:
    """The running stack, and the figures the phases add to."""

    def __init__(
        self,
        args: argparse.Namespace,
        hub: HubClient,
        baseline: Client,
        baseline_queue: str,
        sink_url: str,
        monitor: Monitor,
    ) -> None:
        self.args = args
        self.hub = hub
        self.baseline = baseline
        self.baseline_queue = baseline_queue
        self.sink_url = sink_url
        self.monitor = monitor
        self.figures: dict[str, Any] = {}
        self.lost: dict[str, int] = {}
        self.duplicated: dict[str, int] = {}
        self.outcomes: dict[str, dict[str, int]] = {}
        self.cpu: dict[str, dict[str, float]] = {}
        self._spent: dict[str, dict[str, float]] = {}
        self._counted: dict[str, int] = {}
        self.events = 0
        self.watchdog = Watchdog(args.stall_seconds)
        self.progress = self.watchdog.progress
        self._sink = httpx.AsyncClient(base_url=sink_url, timeout=30)
        # Event ids (hence workflow ids) must be new even on a server that earlier runs used.
        self._run = secrets.token_hex(4)

    def event_id(self, prefix: str, i: int) -> str:
        return f"{self._run}-{prefix}-{i}"

    def event_ids(self, prefix: str, count: int) -> list[str]:
        return [self.event_id(prefix, i) for i in range(count)]

    async def close(self) -> None:
        await self._sink.aclose()

    async def records(self) -> list[list[Any]]:
        response = await self._sink.get("/_records")
        response.raise_for_status()
        return response.json()

    async def arrived(self, *paths: str) -> int:
        response = await self._sink.get("/_count", params=[("path", p) for p in paths])
        response.raise_for_status()
        return int(response.json())

    def check(
        self,
        phase: str,
        records: list[list[Any]],
        expected: set[tuple[str, str]],
        paths: set[str] | None = None,
    ) -> None:
        """Record the phase's lost and duplicated deliveries (paths default to expected's)."""
        found = compare(records, paths or {path for path, _ in expected}, expected)
        self.lost[phase] = found.lost
        self.duplicated[phase] = found.duplicated
        if found.lost or found.duplicated:
            say(f"{phase}: {found.lost} lost, {found.duplicated} duplicated")

    def account(self, phase: str, before: dict[str, float], events: int) -> None:
        """CPU seconds per event of each process group during a phase (summed over its
        rounds when it runs in several)."""
        after = self.monitor.cpu()
        spent = self._spent.setdefault(phase, dict.fromkeys(after, 0.0))
        for key in after:
            spent[key] += after[key] - before[key]
        self._counted[phase] = self._counted.get(phase, 0) + events
        self.cpu[phase] = per_event(dict.fromkeys(spent, 0.0), spent, self._counted[phase])
        self.events += events

    async def start_baseline(self, path: str, request_id: str, i: int) -> WorkflowHandle[Any, int]:
        """Start one bare workflow that POSTs a small JSON body to the sink at path."""
        return await self.baseline.start_workflow(
            "BaselineWorkflow",
            {
                "url": f"{self.sink_url}{path}",
                "request_id": request_id,
                "body": {"id": i, "user": f"user-{i}@example.com", "event": "bench.baseline"},
            },
            id=f"baseline-{request_id}",
            task_queue=self.baseline_queue,
            result_type=int,
        )

    # the phases

    async def throughput_phase(self) -> None:
        """The baseline and hub phases, in --rounds alternating blocks of -n / rounds events
        (baseline, hub, hub, baseline, ...): both sides see the same drift of a shared,
        noisy machine, so their ratio does not depend on which one ran first."""
        blocks = {"baseline": self._baseline_block, "hub": self._hub_block}
        sides = [s for s in blocks if s not in self.args.skip]
        rounds, n = self.args.rounds, self.args.events
        sizes = [n // rounds + (r < n % rounds) for r in range(rounds)]
        elapsed = dict.fromkeys(sides, 0.0)
        for side in sides:
            await blocks[side](f"{side[0]}warm", self.args.warmup)
        for r, size in enumerate(sizes):
            for side in sides if r % 2 == 0 else reversed(sides):
                before = self.monitor.cpu()
                elapsed[side] += await blocks[side](f"{side[0]}{r}-", size)
                self.account(side, before, size)
        records = await self.records()
        for side in sides:
            eps = self.figures[f"{side}_eps"] = n / elapsed[side]
            say(f"{side}: {n} in {elapsed[side]:.2f}s over {rounds} rounds = {eps:.1f}/s")
            ids = self.event_ids(f"{side[0]}warm", self.args.warmup) + [
                i for r, size in enumerate(sizes) for i in self.event_ids(f"{side[0]}{r}-", size)
            ]
            self.check(side, records, {(f"/{side}", i) for i in ids})

    async def _baseline_block(self, prefix: str, count: int) -> float:
        """Seconds for ``count`` bare workflows, from the first start to the last result."""

        async def start(i: int) -> WorkflowHandle[Any, int]:
            return await self.start_baseline("/baseline", self.event_id(prefix, i), i)

        elapsed, _ = await run_all(count, self.args.concurrency, start, self.progress)
        return elapsed

    async def _hub_block(self, prefix: str, count: int) -> float:
        """Seconds for ``count`` hub events, from the first emit to the last result."""
        elapsed, _ = await self._emit_all("hub", "bench.hub", prefix, count)
        return elapsed

    async def _emit_all(
        self, phase: str, event: str, prefix: str, count: int
    ) -> tuple[float, list[DispatchResult]]:
        async def start(i: int) -> WorkflowHandle[Any, DispatchResult]:
            emitted = await self.hub.emit(
                event, {"id": i, "user": f"user-{i}@example.com"}, event_id=self.event_id(prefix, i)
            )
            if not emitted.matched or emitted.duplicate or emitted.workflow_id is None:
                raise RuntimeError(f"{phase}: event {emitted.event_id} was not started: {emitted}")
            return self.hub.temporal.get_workflow_handle(
                emitted.workflow_id, result_type=DispatchResult
            )

        elapsed, results = await run_all(count, self.args.concurrency, start, self.progress)
        outcomes = Counter(r.outcome.value for r in results)
        merged = Counter(self.outcomes.get(phase, {})) + outcomes
        self.outcomes[phase] = dict(merged)
        return elapsed, results

    async def latency_phase(self) -> None:
        """Latency on a fresh server: the first phase."""
        await self._latency("latency", "lat", "")

    async def aged_phase(self) -> None:
        """Latency again once the server has run --aged-events workflows: the last phase."""
        count = max(0, self.args.aged_events - self.events)
        if count:
            say(f"aged: {count} more events first, {self.events} so far")
            await self._emit_all("aged", "bench.hub", "age", count)
            self.events += count
            ids = self.event_ids("age", count)
            self.check("aged-top-up", await self.records(), {("/hub", i) for i in ids})
        self.figures["aged_after_events"] = self.events
        await self._latency("aged", "alat", "aged_")

    async def _latency(self, phase: str, tag: str, key: str) -> None:
        """--rate events/s for --latency-seconds, the bare workflow interleaved at the same
        rate; emit-to-arrival percentiles into the figures, under ``key`` + latency_pNN_ms."""
        count = max(1, round(self.args.rate * self.args.latency_seconds))
        sent: dict[str, float] = {}
        emit_ms: list[float] = []
        before = self.monitor.cpu()
        workflow_ids, baseline = await self._paced(tag, count, sent, emit_ms)
        # A delivered workflow has had its answer from the sink: the records are complete.
        results = await asyncio.gather(*(self._result(w) for w in workflow_ids if w is not None))
        self.outcomes[phase] = dict(Counter(r.outcome.value for r in results))
        self.account(phase, before, count)

        records = await self.records()
        first: dict[tuple[str, str], float] = {}
        for at, path, rid in records:
            first.setdefault((path, rid), at)

        def latencies_at(path: str) -> list[float]:
            arrived = ((first.get((path, rid)), t) for rid, t in sent.items())
            return [(at - t) * 1000 for at, t in arrived if at is not None]

        latencies = latencies_at("/latency")
        baseline_latencies = latencies_at("/baseline-latency")
        for pct in (50, 95, 99):
            for name, values in (("", latencies), ("baseline_", baseline_latencies)):
                figure = percentile(values, pct) if values else None
                self.figures[f"{key}{name}latency_p{pct}_ms"] = figure
        self.figures[f"{key}latency_max_ms"] = max(latencies) if latencies else None
        self.figures[f"{key}emit_p50_ms"] = percentile(emit_ms, 50)
        self.figures[f"{key}latency_events"] = count
        say(
            f"{phase}: {count} events at {self.args.rate:g}/s, {len(latencies)} arrived,"
            f" p50 {rounded(self.figures[f'{key}latency_p50_ms'], 1)} ms,"
            f" p99 {rounded(self.figures[f'{key}latency_p99_ms'], 1)} ms"
        )
        expected = {("/latency", i) for i in self.event_ids(tag, count)}
        if baseline:
            expected |= {("/baseline-latency", i) for i in self.event_ids(f"b{tag}", count)}
        self.check(phase, records, expected)

    async def _paced(
        self, tag: str, count: int, sent: dict[str, float], emit_ms: list[float]
    ) -> tuple[list[str | None], bool]:
        """Emit ``count`` events at --rate (and as many bare workflows, unless the baseline is
        skipped), noting when each was sent; the events' workflow ids once all are started
        and the bare ones done, and whether the bare ones ran."""
        rate = self.args.rate

        async def timed_emit(event_id: str, i: int) -> str | None:
            sent[event_id] = time.time()
            started = time.perf_counter()
            emitted = await self.hub.emit(
                "bench.latency", {"id": i, "user": f"user-{i}@example.com"}, event_id=event_id
            )
            emit_ms.append((time.perf_counter() - started) * 1000)
            self.progress()
            return emitted.workflow_id

        async def timed_baseline(request_id: str, i: int) -> WorkflowHandle[Any, int]:
            sent[request_id] = time.time()
            return await self.start_baseline("/baseline-latency", request_id, i)

        tasks: list[asyncio.Task[str | None]] = []
        baseline_tasks: list[asyncio.Task[WorkflowHandle[Any, int]]] = []
        began = time.perf_counter()

        async def at(seconds: float) -> None:
            delay = began + seconds - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

        # Each bare workflow half an interval after its event: the same rate, not the same
        # instant (both at once would queue each behind the other on the cores).
        for i in range(count):
            await at(i / rate)
            tasks.append(asyncio.create_task(timed_emit(self.event_id(tag, i), i)))
            if "baseline" not in self.args.skip:
                await at((i + 0.5) / rate)
                baseline_tasks.append(
                    asyncio.create_task(timed_baseline(self.event_id(f"b{tag}", i), i))
                )
        workflow_ids = await asyncio.gather(*tasks)
        for handle in await asyncio.gather(*baseline_tasks):
            await handle.result()
        return workflow_ids, bool(baseline_tasks)

    async def _result(self, workflow_id: str) -> DispatchResult:
        handle = self.hub.temporal.get_workflow_handle(workflow_id, result_type=DispatchResult)
        outcome = await handle.result()
        self.progress()
        return outcome

    async def fanout_phase(self) -> None:
        count = self.args.fanout_events
        before = self.monitor.cpu()
        elapsed, results = await self._emit_all("fanout", "bench.fanout", "f", count)
        self.account("fanout", before, count)
        deliveries = sum(len(r.deliveries) for r in results)
        self.figures["fanout_eps"] = count / elapsed
        self.figures["fanout_deliveries_per_s"] = deliveries / elapsed
        say(f"fanout: {count} events, {deliveries} deliveries in {elapsed:.2f}s")
        expected = {
            (f"/fanout/{k}", i) for k in range(FANOUT_SERVICES) for i in self.event_ids("f", count)
        }
        self.check("fanout", await self.records(), expected)

    async def failure_phase(self) -> None:
        count = self.args.failure_events
        before = self.monitor.cpu()
        elapsed, _ = await self._emit_all("failure", "bench.failure", "x", count)
        self.account("failure", before, count)
        self.figures["failure_eps"] = count / elapsed
        self.figures["failure_network_requests"] = await self.arrived("/failure")
        say(f"failure: {count} held and dead-lettered events in {elapsed:.2f}s")
        self.check("failure", await self.records(), set(), paths={"/failure"})


async def configure(store: Store, hub: HubClient, sink_url: str) -> None:
    """The services and rules of every phase, and an open circuit for the failure phase."""
    sink = await store.services.create(ServiceIn(name="bench-sink", base_url=sink_url))
    for event, endpoint in (("bench.hub", "/hub"), ("bench.latency", "/latency")):
        await store.rules.create(
            RuleIn(event=event, service=sink.name, endpoint=endpoint, template=TEMPLATE)
        )
    for k in range(FANOUT_SERVICES):
        service = await store.services.create(ServiceIn(name=f"bench-fan{k}", base_url=sink_url))
        await store.rules.create(
            RuleIn(
                event="bench.fanout",
                service=service.name,
                endpoint=f"/fanout/{k}",
                template=TEMPLATE,
            )
        )
    broken = await store.services.create(
        ServiceIn(
            name="bench-open",
            base_url=sink_url,
            cb_threshold=1,
            cb_cooldown=3600,
            max_attempts=1,
            max_hold=1.0,  # held by the open circuit for a second, then dead-lettered
        )
    )
    await store.rules.create(
        RuleIn(event="bench.failure", service=broken.name, endpoint="/failure", template=TEMPLATE)
    )
    opened = LogEntryIn(service=broken.name, status=LogStatus.FAILED, error="opened by bench")
    log_id, _ = await store.log.begin(opened)
    await CircuitBreaker(store).record(
        broken, Permit(broken.id), healthy=False, log_id=log_id, log=opened
    )
    await hub.index.refresh(min_version=await store.rules.config_version())


async def wait_for_port(port: int, child: Child) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not port_in_use(port):
        if child.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not listen on {port}:\n{child.tail()}")
        await asyncio.sleep(0.05)


@dataclass
class Stack:
    """What bench() started, for the phases to use."""

    dsn: str
    address: str
    sink_url: str
    hub_queue: str
    baseline_queue: str
    monitor: Monitor


async def start_stack(
    args: argparse.Namespace, children: Children, tmp: Path, stack: contextlib.AsyncExitStack
) -> Stack:
    """Database, Temporal, sink and workers; each registers its own cleanup on the stack."""
    run_id = secrets.token_hex(3)
    dsn = await stack.enter_async_context(scratch_database(args.dsn))
    await migrate(dsn)
    say(f"scratch database ready: {urlsplit(dsn).path[1:]}")

    groups: dict[str, list[psutil.Process]] = {"bench": [psutil.Process()]}
    if args.temporal_address:
        address = args.temporal_address
    else:
        server = TemporalDevServer(
            port=free_port(), db_file=tmp / "temporal.db", log_file=tmp / "temporal.log"
        )
        stack.callback(server.stop)
        children.cleanups.append(server.stop)
        await asyncio.to_thread(server.start)
        assert server.process is not None
        groups["server"] = [psutil.Process(server.process.pid)]
        address = server.address
        say(f"Temporal dev server on {address} (db file, WAL pragmas)")

    sink_port = free_port()
    sink_cmd = [sys.executable, str(BENCH / "sink.py"), "--port", str(sink_port)]
    sink = children.start("sink", sink_cmd, tmp / "sink.log")
    stack.push_async_callback(children.stop, [sink])
    await wait_for_port(sink_port, sink)
    groups["sink"] = [sink.process]

    hub_queue, baseline_queue = f"bench-hub-{run_id}", f"bench-baseline-{run_id}"
    env = {
        **os.environ,
        "HUB_DATABASE_URL": dsn,
        "HUB_TEMPORAL_ADDRESS": address,
        "HUB_TASK_QUEUE": hub_queue,
        # The sink is on loopback, which a worker's egress guard refuses unless allowed.
        "HUB_EGRESS_ALLOW": "127.0.0.1",
    }
    workers = [
        children.start(
            f"worker-{i}",
            [sys.executable, "worker.py"],
            tmp / f"worker-{i}.log",
            {**env, "HUB_METRICS_PORT": "0"},  # no /metrics: several workers, other benches
        )
        for i in range(0 if args.in_process else args.workers)
    ]
    stack.push_async_callback(children.stop, workers)
    groups["hub_workers"] = [w.process for w in workers]
    if args.in_process:  # run_phases starts the worker here; its CPU includes the emitter's
        groups["hub_workers"] = groups.pop("bench")
    waits = [w.ready("worker on task queue") for w in workers]
    groups["baseline_worker"] = []
    if "baseline" not in args.skip:
        baseline_cmd = [sys.executable, str(BENCH / "baseline.py"), "worker"]
        baseline_cmd += ["--address", address, "--task-queue", baseline_queue]
        baseline = children.start("baseline-worker", baseline_cmd, tmp / "baseline.log")
        stack.push_async_callback(children.stop, [baseline])
        groups["baseline_worker"] = [baseline.process]
        waits.append(baseline.ready("baseline worker ready"))
    await asyncio.gather(*waits)
    say(f"{len(waits)} worker process(es) polling ({args.workers} hub)")

    monitor = Monitor(groups)
    sampler = asyncio.create_task(monitor.run())
    stack.callback(sampler.cancel)
    return Stack(dsn, address, f"http://127.0.0.1:{sink_port}", hub_queue, baseline_queue, monitor)


async def run_phases(
    args: argparse.Namespace, up: Stack, stack: contextlib.AsyncExitStack
) -> dict[str, Any]:
    """Configure the hub, run every phase not skipped, and gather the figures."""
    settings = Settings(
        database_url=up.dsn,
        temporal_address=up.address,
        task_queue=up.hub_queue,
        egress_allow="127.0.0.1",
    )
    store = await stack.enter_async_context(Store.open(up.dsn, max_size=4))
    if args.in_process:  # as hub dev and hub api --with-worker run: one client for both
        running = await stack.enter_async_context(running_worker(settings))
        temporal = running.client
    else:
        temporal = await connect_temporal(settings)
    eager = args.in_process and not args.no_eager
    hub = await stack.enter_async_context(
        HubClient.connect(settings, temporal=temporal, store=store, eager_start=eager)
    )
    await configure(store, hub, up.sink_url)
    baseline = await Client.connect(up.address)
    runner = Bench(args, hub, baseline, up.baseline_queue, up.sink_url, up.monitor)
    stack.push_async_callback(runner.close)

    monitor = up.monitor
    cpu_at_start = monitor.cpu()
    # The baseline's and the hub's rounds alternate, in one throughput phase.
    steps = [p for p in PHASES if p not in args.skip and p not in ("baseline", "hub")]
    if not {"baseline", "hub"} <= set(args.skip):
        steps.insert(1 if "latency" in steps else 0, "throughput")
    for phase in steps:
        say(f"phase {phase} …")
        async with runner.watchdog.watch(phase):
            await getattr(runner, f"{phase}_phase")()
    cpu_at_end = monitor.cpu()
    monitor.sample()

    figures = runner.figures
    if "hub_eps" in figures and "baseline_eps" in figures:
        figures["hub_vs_baseline"] = figures["hub_eps"] / figures["baseline_eps"]
    by_phase = runner.cpu
    figures["worker_cpu_s_per_event"] = by_phase.get("hub", {}).get("hub_workers")
    figures["server_cpu_s_per_event"] = by_phase.get("hub", {}).get("server")
    figures["baseline_worker_cpu_s_per_event"] = by_phase.get("baseline", {}).get("baseline_worker")
    figures["baseline_server_cpu_s_per_event"] = by_phase.get("baseline", {}).get("server")
    figures["cpu_s_per_event_by_phase"] = by_phase
    figures["cpu_s_total"] = per_event(cpu_at_start, cpu_at_end, 1, digits=2)
    figures["events_total"] = runner.events
    mb = 1024 * 1024
    figures["worker_peak_rss_mb"] = round(monitor.peak_rss["hub_workers"] / mb, 1)
    if "baseline" not in args.skip:
        figures["baseline_worker_peak_rss_mb"] = round(monitor.peak_rss["baseline_worker"] / mb, 1)
    if "server" in monitor.peak_rss:
        figures["server_peak_rss_mb"] = round(monitor.peak_rss["server"] / mb, 1)
    figures["lost"] = runner.lost
    figures["duplicated"] = runner.duplicated
    figures["outcomes"] = runner.outcomes
    return figures


async def bench(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    """Start the stack, run the phases, stop the stack (in reverse order); the figures."""
    try:
        async with contextlib.AsyncExitStack() as stack:
            up = await start_stack(args, children, tmp, stack)
            figures = await run_phases(args, up, stack)
    except Exception:
        log_problems(children.all)  # what the workers said often explains the error
        raise
    # After the stop, so that errors during the workers' shutdown count too.
    figures["log_problems"] = log_problems(children.all)
    return figures


def report(args: argparse.Namespace, figures: dict[str, Any], wall: float) -> dict[str, Any]:
    """The JSON line: the issue's figures first, rounded, then context."""
    keys = (
        "baseline_eps",
        "hub_eps",
        "hub_vs_baseline",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "baseline_latency_p50_ms",
        "baseline_latency_p95_ms",
        "baseline_latency_p99_ms",
        "latency_max_ms",
        "emit_p50_ms",
        "aged_after_events",
        "aged_latency_p50_ms",
        "aged_latency_p95_ms",
        "aged_latency_p99_ms",
        "aged_baseline_latency_p50_ms",
        "aged_baseline_latency_p99_ms",
        "fanout_eps",
        "fanout_deliveries_per_s",
        "failure_eps",
        "failure_network_requests",
        "worker_peak_rss_mb",
        "worker_cpu_s_per_event",
        "server_cpu_s_per_event",
        "baseline_worker_cpu_s_per_event",
        "baseline_server_cpu_s_per_event",
    )
    out: dict[str, Any] = {}
    for key in keys:
        value = figures.pop(key, None)
        out[key] = rounded(value, 5 if "cpu" in key else 2) if isinstance(value, float) else value
    out.update(
        lost=figures.pop("lost"),
        duplicated=figures.pop("duplicated"),
        n=args.events,
        rounds=args.rounds,
        workers=1 if args.in_process else args.workers,
        emitter=emitter_shape(args),
        concurrency=args.concurrency,
        warmup=args.warmup,
        rate=args.rate,
        latency_seconds=args.latency_seconds,
        fanout_events=args.fanout_events,
        fanout_shape=FANOUT_SHAPE,
        failure_events=args.failure_events,
        skipped=sorted(set(args.skip)),
        temporal=args.temporal_address or "dev server, db file, WAL pragmas",
    )
    out.update(figures)
    out.update(
        nproc=os.cpu_count(),
        python=platform.python_version(),
        temporalio=metadata.version("temporalio"),
        commit=git_commit(),
        platform=platform.platform(),
        wall_s=round(wall, 1),
    )
    return out


def emitter_shape(args: argparse.Namespace) -> str:
    """Where the events are emitted from, relative to the worker."""
    if not args.in_process:
        return "separate process (workflows start through the task queue)"
    how = "through the task queue" if args.no_eager else "eagerly"
    return f"in the worker's process, on its client (workflows start {how})"


def bench_parser(
    doc: str | None, only: Iterable[str] | None = None, what: str = "part(s)"
) -> argparse.ArgumentParser:
    """A bench script's parser: its docstring's first line, defaults shown in --help, and
    with ``only`` an option ``--only a,b`` that picks some of those named parts (all by
    default; an unknown name is an error)."""
    parser = argparse.ArgumentParser(
        description=(doc or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if only is not None:
        allowed = tuple(only)

        def parse(text: str) -> list[str]:
            names = [n.strip() for n in text.split(",") if n.strip()]
            if unknown := sorted(set(names) - set(allowed)):
                raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)}")
            return names

        parser.add_argument(
            "--only",
            type=parse,
            default=list(allowed),
            help=f"comma-separated {what} of {', '.join(allowed)}",
        )
    return parser


def run_scratch(
    prefix: str, body: Callable[[Children, Path], Coroutine[Any, Any, dict[str, Any]]]
) -> tuple[dict[str, Any], Path, float] | None:
    """Run ``body`` with a registry of children and a temp dir for their logs, stopping every
    child however it ends: its figures, the dir, the start time; None after Ctrl+C."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    children = Children()
    began = time.perf_counter()
    say(f"logs under {tmp}")
    try:
        figures = asyncio.run(body(children, tmp))
    except KeyboardInterrupt:
        say("interrupted; everything started has been stopped")
        return None
    finally:
        children.kill_all()
    return figures, tmp, began


def git_commit() -> str | None:
    """The commit measured, with "+dirty" if files outside bench/ differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.decode().strip() + ("+dirty" if status.stdout.strip() else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "-n", "--events", type=int, default=1000, help="events per throughput phase"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternating blocks the baseline and hub phases are split into",
    )
    parser.add_argument("--workers", type=int, default=1, help="hub worker processes")
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="latency phase length")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s in the latency phase")
    parser.add_argument(
        "--aged-events",
        type=int,
        default=10_000,
        help="workflows the server has run before the aged phase measures latency again",
    )
    parser.add_argument("--concurrency", type=int, default=50, help="workflow starts in flight")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured events before a phase")
    parser.add_argument("--fanout-events", type=int, default=100, help="events of 5 deliveries")
    parser.add_argument("--failure-events", type=int, default=100, help="events to an open circuit")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=PHASES,
        metavar="PHASE",
        help=f"skip a phase (repeatable): {', '.join(PHASES)}",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run one hub worker in this process on the emitter's client, as hub dev and "
        "hub api --with-worker do (events start eagerly; its CPU includes the emitter's)",
    )
    parser.add_argument(
        "--no-eager", action="store_true", help="with --in-process: start through the queue"
    )
    parser.add_argument("--temporal-address", help="use this Temporal server, start none")
    parser.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server on which to create (and drop) a scratch database",
    )
    parser.add_argument(
        "--stall-seconds", type=float, default=60.0, help="fail a phase idle this long"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    args = parser.parse_args(argv)
    if min(args.events, args.workers, args.concurrency, args.fanout_events, args.rounds) < 1:
        parser.error("counts must be at least 1")
    if args.rounds > args.events:
        parser.error("--rounds must not exceed -n")
    if args.failure_events < 1 or args.rate <= 0 or args.latency_seconds <= 0:
        parser.error("--failure-events, --rate and --latency-seconds must be positive")
    return args


async def main_async(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    """bench() with SIGTERM turned into a cancellation, so its cleanup runs as on Ctrl+C."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    return await bench(args, children, tmp)


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    children = Children()
    began = time.perf_counter()
    say(f"logs under {tmp}")
    keep = True  # the logs explain a failure: keep them unless the run succeeded
    try:
        figures = asyncio.run(main_async(args, children, tmp))
        keep = args.keep
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; everything started has been stopped")
        return 130
    finally:
        children.kill_all()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            if not args.keep:  # the logs tell what went wrong; the Temporal database does not
                for db in tmp.glob("temporal.db*"):
                    db.unlink()
            say(f"logs kept under {tmp}")
    print(json.dumps(report(args, figures, time.perf_counter() - began)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
