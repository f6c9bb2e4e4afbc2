"""What every point of bench/cost_curves.py shares: a worker of its own, CPU by process group
(bench/run.py's Monitor), and the sink's records checked for lost and duplicated deliveries."""

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.control_lab import MB, Lab, stats
from bench.run import BENCH, Child, Monitor, compare, per_event, wait_for_port
from hub.client import HubClient, workflow_id_for
from hub.runtime.embedded import free_port

Records = Callable[[], Awaitable[list[list[Any]]]]
Emitter = Callable[[str], contextlib.AbstractAsyncContextManager[HubClient]]


@dataclass
class Emitted:
    """When each event was sent (time.time()), and how long each emit call took (ms)."""

    sent: dict[str, float] = field(default_factory=dict)
    emit_ms: list[float] = field(default_factory=list)


Emitting = Callable[[HubClient, list[str]], Awaitable[Emitted]]
Expecting = Callable[[list[str]], set[tuple[str, str]]]


def one_by_one(
    event: str | Callable[[int], str],
    gap: float = 0.0,
    data: Callable[[str], dict[str, Any]] | None = None,
) -> Emitting:
    """Emit one event at a time, one every ``gap`` seconds at most, timing each call: emit's
    own cost, and latencies that are not a burst's queueing. ``event``: the name, or the
    name of the n-th event."""

    async def emit(hub: HubClient, ids: list[str]) -> Emitted:
        out, began = Emitted(), time.perf_counter()
        for n, rid in enumerate(ids):
            await asyncio.sleep(max(0.0, began + n * gap - time.perf_counter()))
            body = data(rid) if data else {"id": rid}
            name = event if isinstance(event, str) else event(n)
            out.sent[rid], started = time.time(), time.perf_counter()
            await hub.emit(name, body, event_id=rid)
            out.emit_ms.append((time.perf_counter() - started) * 1000)
        return out

    return emit


def burst(lab: Lab, event: str) -> Emitting:
    """Emit every event at once (--concurrency in flight): throughput, not latency."""

    async def emit(hub: HubClient, ids: list[str]) -> Emitted:
        began = time.time()
        await lab.emit_many(hub, event, ids)
        return Emitted(sent=dict.fromkeys(ids, began))

    return emit


def at_paths(*paths: str) -> Expecting:
    """Each event is expected once at each path."""
    return lambda ids: {(path, rid) for path in paths for rid in ids}


@dataclass
class Measured:
    """One point's emission, what arrived, and the CPU seconds per event of each group."""

    count: int
    began: float
    emitted: Emitted
    wanted: set[tuple[str, str]]
    records: list[list[Any]]
    cpu: dict[str, float]

    def first(self, path: str) -> dict[str, float]:
        arrivals: dict[str, float] = {}
        for record in self.records:
            if record[1] == path:
                arrivals.setdefault(record[2], record[0])
        return arrivals

    def latencies(self, path: str) -> list[float]:
        """Emit-to-arrival milliseconds of this point's events at path."""
        first = self.first(path)
        return [(first[i] - t) * 1000 for i, t in self.emitted.sent.items() if i in first]

    def span(self) -> float:
        """Seconds from the first emit to the last expected arrival."""
        firsts: dict[tuple[str, str], float] = {(r[1], r[2]): r[0] for r in self.records[::-1]}
        return max(firsts[w] for w in self.wanted if w in firsts) - self.began

    def figures(self) -> dict[str, Any]:
        found = compare([r[:3] for r in self.records], {p for p, _ in self.wanted}, self.wanted)
        return {
            "events": self.count,
            "cpu_s_per_event": {k: v for k, v in self.cpu.items() if k != "sinks"},
            "seconds": round(self.span(), 2),
            "lost": found.lost,
            "duplicated": found.duplicated,
        }


@dataclass
class Point:
    """A hub worker on a task queue of its own, an emitter for it, and the CPU monitor."""

    lab: Lab
    name: str
    queue: str
    hub: HubClient
    worker: Child
    monitor: Monitor
    records: Records
    ids: list[str] = field(default_factory=list)
    idle_rss: int = 0

    async def arrived(self, wanted: set[tuple[str, str]]) -> list[list[Any]]:
        """The sink's records once every wanted (path, id) is among them."""
        got: list[list[Any]] = []

        async def done() -> bool:
            nonlocal got
            got = await self.records()
            return wanted <= {(r[1], r[2]) for r in got}

        await self.lab.until(done, f"{self.name} deliveries")
        return got

    async def measure(self, count: int, emit: Emitting, expect: Expecting) -> Measured:
        """--warmup unmeasured events, then count measured ones, all awaited at the sink."""
        warm = self.lab.ids(f"{self.name}-warm", self.lab.args.warmup)
        ids = self.lab.ids(self.name, count)
        self.ids += warm + ids
        await emit(self.hub, warm)
        await self.arrived(expect(warm))
        before, began = self.monitor.cpu(), time.time()
        emitted = await emit(self.hub, ids)
        await self.arrived(expect(ids))
        cpu = per_event(before, self.monitor.cpu(), count)
        await asyncio.sleep(1.0)  # a duplicate would come late
        return Measured(count, began, emitted, expect(ids), await self.records(), cpu)

    async def holding(self, seconds: float) -> dict[str, Any]:
        """CPU seconds per second of each group, and worker RSS, while nothing is emitted."""
        before = self.monitor.cpu()
        await asyncio.sleep(seconds)
        spent = per_event(before, self.monitor.cpu(), 1)
        return {
            "cpu_s_per_s": {k: round(v / seconds, 3) for k, v in spent.items() if k != "sinks"},
            "worker_rss_mb": {
                "idle": round(self.idle_rss / MB, 1),
                "now": round(self.worker.process.memory_info().rss / MB, 1),
                "peak": round(self.monitor.peak_rss["worker"] / MB, 1),
            },
        }

    async def terminate_all(self) -> dict[str, int]:
        """End every workflow this point started (held ones stay open otherwise), so that the
        next point starts clean: how many the server had terminated before (not us), how
        many we did, and how many still run on the queue (0 when clean)."""
        gate, ended = asyncio.Semaphore(16), 0

        async def end(rid: str) -> None:
            nonlocal ended
            async with gate:
                with contextlib.suppress(Exception):  # it had completed
                    handle = self.lab.temporal.get_workflow_handle(workflow_id_for(rid))
                    await handle.terminate(reason="cost_curves: the point is over")
                    ended += 1

        query = f"TaskQueue = '{self.queue}' AND ExecutionStatus = 'Terminated'"
        by_server = (await self.lab.temporal.count_workflows(query)).count
        await asyncio.gather(*(end(rid) for rid in self.ids))
        query = f"TaskQueue = '{self.queue}' AND ExecutionStatus = 'Running'"
        for _ in range(20):
            running = (await self.lab.temporal.count_workflows(query)).count
            if running == 0:
                break
            await asyncio.sleep(0.5)
        return {"terminated_before": by_server, "terminated": ended, "still_running": running}


def latency(values: list[float]) -> dict[str, float | None]:
    """p50 and p99 of emit-to-arrival latencies (ms)."""
    return {k: v for k, v in stats(values).items() if k != "max_ms"}


@contextlib.asynccontextmanager
async def point(
    lab: Lab, name: str, records: Records, emitter: Emitter | None = None, **env: str
) -> AsyncIterator[Point]:
    """A worker process on a new queue, measured alone: its CPU, the server's, PostgreSQL's."""
    queue = lab.queue(name)
    emitting = emitter(queue) if emitter else lab.emitter(queue)
    async with emitting as hub, lab.worker(queue, **env) as worker:
        assert lab.server is not None
        sinks = [c.process for c in lab.children.all if "sink" in c.name]
        groups = {"worker": [worker.process], "server": [lab.server], "sinks": sinks}
        monitor = Monitor({**groups, "bench": [psutil.Process()]})
        sampler = asyncio.create_task(monitor.run())
        try:
            rss = worker.process.memory_info().rss
            yield Point(lab, name, queue, hub, worker, monitor, records, idle_rss=rss)
        finally:
            sampler.cancel()


@dataclass
class Sinks:
    """Readers of the records of the lab's sink and of bench/curve_sink.py (bodies hashed)."""

    plain: Records
    hashing: Records
    hashing_url: str


async def sinks(lab: Lab, stack: contextlib.AsyncExitStack) -> Sinks:
    """Start bench/curve_sink.py next to the lab's sink; readers of both."""
    port = free_port()
    cmd = [sys.executable, str(BENCH / "curve_sink.py"), "--port", str(port)]
    child = lab.children.start("curve-sink", cmd, lab.tmp / "curve-sink.log")
    stack.push_async_callback(lab.children.stop, [child])
    await wait_for_port(port, child)
    url = f"http://127.0.0.1:{port}"

    async def records() -> list[list[Any]]:
        response = await lab.http.get(f"{url}/_records")
        response.raise_for_status()
        return list(response.json())

    return Sinks(lab.records, records, url)
