"""The engine's cost per event, from real histories and counters, for each delivery shape.

    .venv/bin/python bench/event_cost.py [-n 200] [--only single,fanout,retry,held,ordered]
                                         [--keys 10] [--hold-seconds 10] [--backoff 0.05]

Sizing a Temporal cluster (docs/scaling.md) needs more than CPU seconds: workflow tasks,
history events and bytes, regular activity tasks, Temporal's persistence requests, and the
hub's PostgreSQL commits and rows written, per event. Starts what bench/control_lab.Lab
starts, with the dev server's Prometheus endpoint on (``--metrics-port``). Per scenario: a
hub worker on a queue of its own, warm-up events, an idle window (whose rate of background
requests and commits is subtracted), -n events, each awaited (ordered ones until their lanes
close), then every history fetched. Scenarios:

  single   one rule, one service, answered 200
  fanout   5 rules, one per service
  retry    the sink answers 500, 500, 200; the service's backoff is --backoff
  held     the service is paused from the start; held --hold-seconds, then resumed and woken
  ordered  a rule with an order key, --keys keys, emitted one after another

Prints ONE JSON line on stdout; progress goes to stderr. Not a test: run it by hand.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import httpx
import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import control_lab
from bench.control_costs import FlakyProtocol, FlakyRecorder, cost_now, cost_since
from bench.control_lab import Lab
from bench.run import Children, bench_parser, git_commit, run_scratch, say
from hub.core.control import lane_id
from hub.core.models import DispatchResult
from hub.engine.holds import count_held, wake_held
from hub.runtime.embedded import TemporalDevServer, free_port, temporal_binary

SCENARIOS = ("single", "fanout", "retry", "held", "ordered")
FANOUT = 5
# A backend's stats reach pg_stat_database when it next flushes them: at most
# PGSTAT_IDLE_INTERVAL (10 s, PostgreSQL 15) after it went idle.
PG_FLUSH = 11.0
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")
OPERATION = re.compile(r'operation="([^"]*)"')
PREFIXES = {
    "persistence_requests": "db",
    "visibility_persistence_requests": "vis",
    "service_requests": "api",
}
WRITE_OP = re.compile(
    r"^(Create|Update|Append|Add|Put|Delete|Complete|RangeComplete|RangeDelete|Insert|Upsert"
    r"|ConflictResolve|Set|Save|Record|Trim|Fork)"
)
PG_STATS = (
    "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted"
    " FROM pg_stat_database WHERE datname = current_database()"
)
KINDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow_tasks_failed",
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: "workflow_tasks_timed_out",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity_tasks",
    EventType.EVENT_TYPE_MARKER_RECORDED: "local_activities",
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signals_received",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signals_sent",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search_attribute_upserts",
}


class MeteredDevServer(TemporalDevServer):
    """The dev server Lab starts, with its Prometheus endpoint on: Lab builds it by name,
    so run_scenarios() swaps this class in rather than copying Lab.start."""

    started: ClassVar[list["MeteredDevServer"]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics_port = free_port()
        MeteredDevServer.started.append(self)

    def command(self) -> list[str]:
        return [*super().command(), "--metrics-port", str(self.metrics_port)]


class FailFirst(FlakyRecorder):
    """Answers 500 to the first ``fails`` requests of each event on a /retry path."""

    def __init__(self, fails: int) -> None:
        super().__init__(0.0)
        self.fails = fails
        self.seen: Counter[str] = Counter()

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        rid = headers.get(b"x-hub-event-id", b"").decode()
        self.seen[rid] += 1
        self.failed_last = path.startswith("/retry") and self.seen[rid] <= self.fails
        self.records.append([time.time(), path, rid, 500 if self.failed_last else 200])


@dataclass
class Reading:
    """Every counter at one moment: Temporal's, PostgreSQL's and CPU seconds."""

    at: float
    temporal: Counter[str]
    pg: Counter[str]
    cpu: dict[str, float]


class Meter:
    """Reads the dev server's /metrics and the scratch database's pg_stat_database."""

    def __init__(self, lab: Lab, metrics_port: int, pg: asyncpg.Connection) -> None:
        self.lab, self.port, self.pg = lab, metrics_port, pg
        self.http = httpx.AsyncClient(timeout=30)

    async def temporal(self) -> Counter[str]:
        """persistence_requests by operation ("db:"; "vis:" for visibility's) and the
        frontend's API calls ("api:"), summed over their other labels."""
        text = (await self.http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        out: Counter[str] = Counter()
        for sample in filter(None, map(SAMPLE.match, text.splitlines())):
            name, labels, value = sample.groups()
            operation = OPERATION.search(labels)
            if name == "service_requests" and 'service_name="frontend"' not in labels:
                continue
            if operation is not None and name in PREFIXES:
                out[f"{PREFIXES[name]}:{operation[1]}"] += float(value)
        return out

    async def read(self, workers: list[psutil.Process]) -> Reading:
        row = await self.pg.fetchrow(PG_STATS)
        assert row is not None
        pg = Counter({k: float(v) for k, v in row.items()})
        return Reading(time.time(), await self.temporal(), pg, cost_now(self.lab, workers))


def net_per_event(
    start: Reading, idle: Reading, end: Reading, n: int, field: str
) -> dict[str, float]:
    """(end - idle) minus the idle window's rate over that span, per event."""
    rate_span = (end.at - idle.at) / max(idle.at - start.at, 1e-9)
    a, b, c = getattr(start, field), getattr(idle, field), getattr(end, field)
    keys = set(a) | set(b) | set(c)
    return {k: ((c[k] - b[k]) - (b[k] - a[k]) * rate_span) / n for k in keys}


def engine_figures(start: Reading, idle: Reading, end: Reading, n: int) -> dict[str, Any]:
    """Temporal's persistence requests (writes and reads) and API calls per event."""
    per = net_per_event(start, idle, end, n, "temporal")
    db = {k[3:]: v for k, v in per.items() if k.startswith("db:") and abs(v) >= 0.005}
    vis = {k[4:]: v for k, v in per.items() if k.startswith("vis:") and abs(v) >= 0.005}
    api = {k[4:]: v for k, v in per.items() if k.startswith("api:") and abs(v) >= 0.05}
    writes = sum(v for k, v in db.items() if WRITE_OP.match(k))
    idle_s = idle.at - start.at
    idle_db = sum(idle.temporal[k] - start.temporal[k] for k in idle.temporal if k[:3] == "db:")
    return {
        "persistence_writes": round(writes, 2),
        "persistence_reads": round(sum(db.values()) - writes, 2),
        "visibility_writes": round(sum(v for k, v in vis.items() if WRITE_OP.match(k)), 2),
        "persistence_by_operation": {k: round(v, 2) for k, v in sorted(db.items())},
        "visibility_by_operation": {k: round(v, 2) for k, v in sorted(vis.items())},
        "api_calls": {k: round(v, 2) for k, v in sorted(api.items())},
        "idle_persistence_requests_per_s": round(idle_db / idle_s, 2),
    }


def pg_figures(start: Reading, idle: Reading, end: Reading, n: int) -> dict[str, Any]:
    """PostgreSQL commits and rows written per event, net of the idle rate (this script's
    own three reads included: 3 / n commits)."""
    per = net_per_event(start, idle, end, n, "pg")
    per["rows_written"] = per["tup_inserted"] + per["tup_updated"] + per["tup_deleted"]
    idle_s = idle.at - start.at
    return {
        **{k: round(v, 2) for k, v in sorted(per.items())},
        "idle_commits_per_s": round((idle.pg["xact_commit"] - start.pg["xact_commit"]) / idle_s, 2),
        "raw_commits_per_event": round((end.pg["xact_commit"] - idle.pg["xact_commit"]) / n, 2),
    }


def history_figures(events: list[HistoryEvent]) -> Counter[str]:
    """What one history holds: events, bytes, workflow tasks, activity tasks, timers …"""
    out: Counter[str] = Counter(
        history_events=len(events), history_bytes=sum(e.ByteSize() for e in events)
    )
    for event in events:
        kind = KINDS.get(event.event_type)
        if kind is not None:
            out[kind] += 1
    return out


async def histories(lab: Lab, workflow_ids: list[str]) -> Counter[str]:
    """The figures of every history, summed (each workflow's latest run)."""
    gate = asyncio.Semaphore(16)

    async def one(workflow_id: str) -> Counter[str]:
        async with gate:
            history = await lab.temporal.get_workflow_handle(workflow_id).fetch_history()
        return history_figures(list(history.events))

    total: Counter[str] = Counter()
    for figures in await asyncio.gather(*(one(w) for w in workflow_ids)):
        total.update(figures)
    return total


@dataclass
class Shape:
    """A scenario as configured: its event, its warm-up event, its services."""

    name: str
    event: str
    warm_event: str
    services: list[str]
    lanes: list[str]


async def configure(lab: Lab, name: str, sink_url: str) -> Shape:
    """Services and rules of one scenario. Every service tolerates the retry scenario's
    failures (circuit threshold 1000), so only the scenario's own behaviour shows."""
    base = {"base_url": sink_url, "cb_threshold": 1000}
    event, warm = f"{name}.ev", f"{name}.ev"
    count = FANOUT if name == "fanout" else 1
    extra: dict[str, Any] = {"backoff": lab.args.backoff} if name == "retry" else {}
    services = [await lab.service(f"{name}{k}", **base, **extra) for k in range(count)]
    order_key = "data.key" if name == "ordered" else None
    for k, service in enumerate(services):
        await lab.rule(event, service, endpoint=f"/{name}/{k}", order_key=order_key)
    if name == "held":
        # Paused before any worker caches it; the warm-up goes to a service that is not.
        await lab.store.services.set_paused(services[0].name, True)
        warm_service = await lab.service("held-warm", **base)
        warm = "held.warm"
        await lab.rule(warm, warm_service, endpoint="/held-warm")
    keys = range(lab.args.keys) if order_key else range(0)
    lanes = [lane_id(services[0].name, f"k{k}") for k in keys]
    return Shape(name, event, warm, [s.name for s in services], lanes)


async def emit(lab: Lab, hub: Any, shape: Shape, event: str, ids: list[str]) -> None:
    """Emit: concurrently, or one after another for ordered events (emission order is
    what the lanes keep)."""
    if shape.name != "ordered":
        await lab.emit_many(hub, event, ids)
        return
    for i, rid in enumerate(ids):
        key = f"{'w' if rid.endswith('w') else 'k'}{i % lab.args.keys}"
        await hub.emit(event, {"id": rid, "key": key}, event_id=rid)


async def release_held(lab: Lab, shape: Shape, count: int) -> float:
    """Wait until every delivery holds, hold --hold-seconds more, resume and wake; the
    seconds they were held in all."""
    service = shape.services[0]
    began = time.monotonic()

    async def all_held() -> bool:
        return await count_held(lab.temporal, service) >= count

    await lab.until(all_held, "held deliveries")
    await asyncio.sleep(lab.args.hold_seconds)
    await lab.store.services.set_paused(service, False)
    await wake_held(lab.temporal, service)
    return time.monotonic() - began


async def lanes_closed(lab: Lab, lanes: list[str]) -> None:
    """Wait until every lane has completed (an idle lane completes after 60 s): one long
    poll per lane, so that waiting adds next to nothing to the counters."""
    waits = (lab.temporal.get_workflow_handle(lane).result() for lane in lanes)
    await asyncio.wait_for(asyncio.gather(*waits), lab.args.stall_seconds)


async def run_events(
    lab: Lab, hub: Any, shape: Shape, event: str, ids: list[str], measured: bool
) -> dict[str, Any]:
    """Emit ids and await every workflow (releasing held ones, closing lanes)."""
    out: dict[str, Any] = {}
    await emit(lab, hub, shape, event, ids)
    if measured and shape.name == "held":
        out["held_s"] = round(await release_held(lab, shape, len(ids)), 1)

    async def result(rid: str) -> str:
        handle = lab.temporal.get_workflow_handle(f"event-{rid}", result_type=DispatchResult)
        return (await handle.result()).outcome.value

    outcomes = await asyncio.wait_for(
        asyncio.gather(*(result(i) for i in ids)), lab.args.stall_seconds
    )
    out["outcomes"] = dict(Counter(outcomes))
    if measured and shape.lanes:
        await lanes_closed(lab, shape.lanes)
    return out


async def measure(lab: Lab, meter: Meter, shape: Shape, sink: FailFirst) -> dict[str, Any]:
    """Warm up, an idle window, -n events; then the figures per event."""
    n, queue = lab.args.events, lab.queue(shape.name)
    ids = lab.ids(shape.name, n)
    load_before = os.getloadavg()[0]
    async with lab.emitter(queue) as hub, lab.worker(queue, HUB_METRICS_PORT="0") as worker:
        warm = [f"{i}w" for i in lab.ids(shape.name, lab.args.warmup)]
        await run_events(lab, hub, shape, shape.warm_event, warm, measured=False)
        await asyncio.sleep(PG_FLUSH)
        workers = [worker.process]
        start = await meter.read(workers)
        await asyncio.sleep(lab.args.idle_seconds)
        idle = await meter.read(workers)
        began = time.monotonic()
        out = await run_events(lab, hub, shape, shape.event, ids, measured=True)
        out["seconds"] = round(time.monotonic() - began, 1)
        await asyncio.sleep(PG_FLUSH)
        end = await meter.read(workers)
        out["cpu_ms_per_event"] = cost_since(lab, workers, idle.cpu, n)
    requests = [r for r in sink.records if r[1].startswith(f"/{shape.name}/") and r[2] in ids]
    workflows = await histories(lab, [f"event-{i}" for i in ids])
    lanes = await histories(lab, shape.lanes)
    per = {k: round(v / n, 2) for k, v in (workflows + lanes).items()}
    return {
        "events": n,
        "deliveries_per_event": len(shape.services),
        "sink_requests_per_event": round(len(requests) / n, 2),
        **out,
        "engine_per_event": per,
        "lanes_per_event": {k: round(v / n, 2) for k, v in lanes.items()},
        "temporal_per_event": engine_figures(start, idle, end, n),
        "postgres_per_event": pg_figures(start, idle, end, n),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


async def run_scenarios(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    """The lab, the failing-on-demand sink, then each scenario in turn."""
    control_lab.TemporalDevServer = MeteredDevServer  # type: ignore[misc]
    lab = Lab(args, children, tmp)
    sink = FailFirst(fails=2)
    port = free_port()
    figures: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        await lab.start(stack)
        server = await asyncio.get_running_loop().create_server(
            lambda: FlakyProtocol(sink), "127.0.0.1", port
        )
        await stack.enter_async_context(server)
        pg = await asyncpg.connect(lab.dsn)
        stack.push_async_callback(pg.close)
        meter = Meter(lab, MeteredDevServer.started[-1].metrics_port, pg)
        stack.push_async_callback(meter.http.aclose)
        for name in args.only:
            say(f"scenario {name} …")
            shape = await configure(lab, name, f"http://127.0.0.1:{port}")
            figures[name] = await measure(lab, meter, shape, sink)
            say(f"{name}: {json.dumps(figures[name]['engine_per_event'])}")
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, SCENARIOS, "scenario(s)")
    add = parser.add_argument
    add("-n", "--events", type=int, default=200, help="measured events per scenario")
    add("--warmup", type=int, default=10, help="unmeasured events before each scenario")
    add("--idle-seconds", type=float, default=10.0, help="idle window (background rates)")
    add("--keys", type=int, default=10, help="ordered: distinct order keys")
    add("--hold-seconds", type=float, default=10.0, help="held: hold after all are held")
    add("--backoff", type=float, default=0.05, help="retry: the service's backoff, seconds")
    add("--concurrency", type=int, default=50, help="emits in flight")
    add("--stall-seconds", type=float, default=300.0, help="give up a wait after this long")
    add("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    args.worker_slots = None  # Lab's option: the workers' default slots
    if min(args.events, args.keys) < 1 or args.warmup < 0 or args.idle_seconds <= 0:
        parser.error("-n and --keys must be at least 1, --idle-seconds positive")
    return args


def main() -> int:
    args = parse_args()
    ran = run_scratch("hub-event-cost-", lambda children, tmp: run_scenarios(args, children, tmp))
    if ran is None:
        return 130
    figures, tmp, began = ran
    shutil.rmtree(tmp, ignore_errors=True)  # kept when something failed: its logs tell why
    version = subprocess.run([temporal_binary(), "--version"], capture_output=True, check=False)
    out = {
        **figures,
        "args": {k: v for k, v in vars(args).items() if k not in ("dsn", "worker_slots")},
        "temporal": version.stdout.decode().strip(),
        "nproc": os.cpu_count(),
        "commit": git_commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
