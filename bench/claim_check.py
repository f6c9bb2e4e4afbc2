"""What claim-checking costs against carrying the value inline, per event size.

    .venv/bin/python bench/claim_check.py [--events 300] [--sizes 512,2048,8192,32768,131072]
                                          [--latency-events 100] [--rate 10] [--rounds 4]
                                          [--concurrency 50] [--warmup 10] [--dsn postgresql://…]

Event data over EVENT_INLINE_MAX is claim-checked into PostgreSQL by the emitter, and rendered
payloads over PAYLOAD_INLINE_MAX by the plan activity (hub.core.claims). This measures both
ways for each event size, so the thresholds can be chosen from numbers:

  inline  the thresholds set huge: the event and its payload ride in the workflow history;
  claim   the thresholds set to 0: both go to the claims table, the history carries keys.

The thresholds are patched where they are used (hub.engine.client and activities.store import
the names directly). Each event has one string field of random text, sized so that the whole
event's JSON is the given size; its rule's template is "" (the whole event), so the payload is
as large as the event. A size whose inline payload would not fit Temporal's 2 MB payload limit
is measured only claim-checked, and listed under "skipped".

Runs, in this process, a hub worker (hub.engine.worker.running_worker, payload codec on as in
production) and a HubClient; a Temporal dev server (headless, database file in a temp dir) and
the HTTP sink (bench/sink.py) as child processes; a scratch database hub_bench_<hex>,
dropped at the end. For each size, each mode is warmed up (--warmup events), then the modes
take turns in --rounds blocks each, in A B B A order (which mode goes first alternates from
size to size too), so that both see the same noise on a shared machine. A block is a share of:

  burst   --events events, --concurrency emits in flight, every result awaited: events/s,
          CPU per event, the history of one workflow, claims rows and bytes per event;
  paced   --latency-events events at --rate/s: emit-to-delivered latency (the sink's arrival
          time minus time.time() just before emit), well below saturation.

CPU seconds (user + system) per event during the burst: ``hub`` is this process (worker and
emitter), ``server`` the Temporal dev server, ``postgres`` the backends of the scratch
database, ``others`` the machine's busy time minus those and the sink (noise: compare runs
only when it is small). Prints ONE JSON line; progress goes to stderr. Not a test.
"""

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import activities.store as plan_module
import hub.engine.client as emit_module
from bench.run import percentile, say, scratch_database
from hub.client import HubClient
from hub.config import Settings
from hub.core.claims import EVENT_INLINE_MAX, PAYLOAD_INLINE_MAX, PLAN_INLINE_BUDGET
from hub.core.limits import event_bytes
from hub.core.models import DispatchResult, Event, RuleIn, ServiceIn
from hub.engine.worker import running_worker
from hub.runtime.children import parent_death_signal
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, free_port, port_in_use
from hub.secrets import SecretBox
from hub.store import Store

BENCH = Path(__file__).resolve().parent
EVENT = "bench.claims"
PATH = "/claims"
MODES = {"inline": 1 << 62, "claim": 0}
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024
DEFAULT_SIZES = "512,2048,8192,32768,131072"
# Where each threshold is read, and its value there before the bench touches it.
USERS = {
    emit_module: ("EVENT_INLINE_MAX",),
    plan_module: ("PAYLOAD_INLINE_MAX", "PLAN_INLINE_BUDGET"),
}
ORIGINAL = {(m, name): getattr(m, name, None) for m, names in USERS.items() for name in names}


# setup


def set_limits(value: int | None) -> None:
    """Every threshold, in each module that imported it, to value (None: the module's own).

    Raises if a module no longer has the name it should: the bench would measure nothing.
    """
    for module, names in USERS.items():
        for name in names:
            if not hasattr(module, name):
                raise RuntimeError(f"{module.__name__} no longer has {name}: update the bench")
            setattr(module, name, ORIGINAL[module, name] if value is None else value)


def inline_fits(size: int) -> bool:
    """Whether an event of size bytes, and its whole-event payload, fit one Temporal payload.

    The largest inline payload is the plan: the rendered payload as a JSON string (its quotes
    escaped) plus the delivery's fields and the codec's nonce and tag.
    """
    return size * 1.05 + 4096 <= TEMPORAL_PAYLOAD_LIMIT


def start_sink(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """bench/sink.py on a free port; from the main thread, so it dies with us."""
    port = free_port()
    with (tmp / "sink.log").open("ab") as out:
        sink = subprocess.Popen(
            [sys.executable, str(BENCH / "sink.py"), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
    deadline = time.monotonic() + 30
    while not port_in_use(port):
        if sink.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the sink did not listen on {port}")
        time.sleep(0.05)
    return sink, port


def stop_sink(sink: subprocess.Popen[bytes]) -> None:
    if sink.poll() is None:
        sink.send_signal(signal.SIGTERM)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()


class Warnings(logging.Handler):
    """Counts the worker's warnings and errors (a failed attempt, a failed task)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


# measurements


class Cpu:
    """CPU seconds so far of this process, the Temporal server, the sink, the database's
    backends (found by their process title, which names the database) and the machine."""

    def __init__(self, server_pid: int, sink_pid: int, database: str) -> None:
        self._fixed = {
            "hub": psutil.Process(),
            "server": psutil.Process(server_pid),
            "sink": psutil.Process(sink_pid),
        }
        self._database = database
        self._backends: dict[int, psutil.Process] = {}
        self._last: dict[int, float] = {}

    def _seconds(self, process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            self._last[process.pid] = times.user + times.system
        return self._last.get(process.pid, 0.0)

    def read(self) -> dict[str, float]:
        for process in psutil.process_iter(["name", "cmdline"]):
            title = " ".join(process.info["cmdline"] or ())
            if process.info["name"] == "postgres" and f" {self._database} " in title:
                self._backends.setdefault(process.pid, process)
        readings = {name: self._seconds(p) for name, p in self._fixed.items()}
        readings["postgres"] = sum(self._seconds(p) for p in self._backends.values())
        t = psutil.cpu_times()
        readings["machine"] = t.user + t.nice + t.system + t.irq + t.softirq
        return readings


def add_cpu(total: dict[str, float], before: dict[str, float], after: dict[str, float]) -> None:
    """Add each group's CPU seconds between two readings; ``others`` is the rest of the
    machine's busy time (what other programs used meanwhile)."""
    spent = {k: after[k] - before[k] for k in after}
    spent["others"] = max(0.0, spent.pop("machine") - sum(spent.values()))
    for name, seconds in spent.items():
        total[name] = total.get(name, 0.0) + seconds


def quantiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(percentile(values, 50), 1), round(percentile(values, 95), 1)


def share(total: int, part: int, parts: int) -> int:
    """The part-th of parts nearly equal shares of total."""
    return total // parts + (1 if part < total % parts else 0)


@dataclass
class Tally:
    """What one mode adds up to over the blocks of one size."""

    events: int = 0
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    claim_rows: int = 0
    claim_bytes: int = 0
    burst_sent: dict[str, float] = field(default_factory=dict)
    paced_sent: dict[str, float] = field(default_factory=dict)
    emit_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    workflow: str = ""


class Bench:
    """The running stack: emits events of a size and reads back what the sink saw."""

    def __init__(
        self, args: argparse.Namespace, hub: HubClient, store: Store, sink_url: str, cpu: Cpu
    ) -> None:
        self.args = args
        self.hub = hub
        self.store = store
        self.cpu = cpu
        self.sink = httpx.AsyncClient(base_url=sink_url, timeout=60)
        self.run = secrets.token_hex(3)
        # Every id has the same length, so one overhead fits every event.
        sample = Event(id=self.event_id(0, "inline", "x00", 0), name=EVENT, data={"blob": ""})
        self.overhead = event_bytes(sample)

    def event_id(self, size: int, mode: str, kind: str, i: int) -> str:
        return f"{self.run}-{size:08d}-{mode[0]}{kind}-{i:05d}"

    def data(self, size: int, count: int) -> list[dict[str, str]]:
        """count distinct bodies of random URL-safe text, each making a size-byte event."""
        length = max(0, size - self.overhead)
        raw = (os.urandom(length * 3 // 4 + 3) for _ in range(count))
        return [{"blob": base64.urlsafe_b64encode(r).decode()[:length]} for r in raw]

    async def emit(self, event_id: str, data: dict[str, str], sent: dict[str, float]) -> str:
        sent[event_id] = time.time()
        emitted = await self.hub.emit(EVENT, data, event_id=event_id)
        if not emitted.matched or emitted.duplicate or emitted.workflow_id is None:
            raise RuntimeError(f"event {event_id} was not started: {emitted}")
        return emitted.workflow_id

    async def result(self, workflow_id: str) -> DispatchResult:
        handle = self.hub.temporal.get_workflow_handle(workflow_id, result_type=DispatchResult)
        return await handle.result()

    async def burst(
        self, ids: list[str], bodies: list[dict[str, str]], sent: dict[str, float]
    ) -> tuple[float, list[str], list[DispatchResult]]:
        """Emit every event, --concurrency in flight; await every result."""
        gate = asyncio.Semaphore(self.args.concurrency)

        async def one(event_id: str, data: dict[str, str]) -> tuple[str, DispatchResult]:
            async with gate:
                workflow_id = await self.emit(event_id, data, sent)
            return workflow_id, await self.result(workflow_id)

        began = time.perf_counter()
        done = await asyncio.gather(*(one(i, d) for i, d in zip(ids, bodies, strict=True)))
        return time.perf_counter() - began, [w for w, _ in done], [r for _, r in done]

    async def paced(
        self, ids: list[str], bodies: list[dict[str, str]], sent: dict[str, float]
    ) -> tuple[list[float], list[DispatchResult]]:
        """Emit at --rate/s without waiting; then await every result. Emit-call times."""
        emit_ms: list[float] = []

        async def one(event_id: str, data: dict[str, str]) -> DispatchResult:
            started = time.perf_counter()
            workflow_id = await self.emit(event_id, data, sent)
            emit_ms.append((time.perf_counter() - started) * 1000)
            return await self.result(workflow_id)

        tasks = []
        began = time.perf_counter()
        for k, (event_id, data) in enumerate(zip(ids, bodies, strict=True)):
            await asyncio.sleep(max(0.0, began + k / self.args.rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(event_id, data)))
        return emit_ms, list(await asyncio.gather(*tasks))

    async def claims(self) -> tuple[int, int]:
        """Rows and bytes (with TOAST and indexes) of the claims table."""
        async with self.store.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT count(*), pg_total_relation_size('claims') FROM claims"
            )
        return int(row[0]), int(row[1])

    async def history(self, workflow_id: str) -> tuple[int, int]:
        """Bytes (sum of event.ByteSize()) and events of one workflow's history."""
        handle = self.hub.temporal.get_workflow_handle(workflow_id)
        events = (await handle.fetch_history()).events
        return sum(e.ByteSize() for e in events), len(events)

    async def arrivals(self) -> dict[str, list[float]]:
        """Every arrival time at the sink, per event id."""
        response = await self.sink.get("/_records")
        response.raise_for_status()
        arrived: dict[str, list[float]] = {}
        for at, path, rid in response.json():
            if path == PATH:
                arrived.setdefault(rid, []).append(at)
        return arrived

    async def warm(self, size: int, mode: str) -> None:
        """Unmeasured events of this size and mode."""
        set_limits(MODES[mode])
        ids = [self.event_id(size, mode, "w00", i) for i in range(self.args.warmup)]
        await self.burst(ids, self.data(size, len(ids)), {})

    async def block(self, size: int, mode: str, part: int, tally: Tally) -> None:
        """One mode's share of the burst, then of the paced events, added to its tally."""
        set_limits(MODES[mode])
        rounds = self.args.rounds
        n = share(self.args.events, part, rounds)
        m = share(self.args.latency_events, part, rounds)
        burst_ids = [self.event_id(size, mode, f"b{part:02d}", i) for i in range(n)]
        paced_ids = [self.event_id(size, mode, f"p{part:02d}", i) for i in range(m)]
        burst_bodies, paced_bodies = self.data(size, n), self.data(size, m)
        rows0, bytes0 = await self.claims()
        cpu0 = self.cpu.read()
        elapsed, workflows, results = await self.burst(burst_ids, burst_bodies, tally.burst_sent)
        add_cpu(tally.cpu, cpu0, self.cpu.read())
        rows1, bytes1 = await self.claims()
        tally.events += n
        tally.elapsed += elapsed
        tally.claim_rows += rows1 - rows0
        tally.claim_bytes += bytes1 - bytes0
        tally.workflow = workflows[-1]
        tally.outcomes.update(r.outcome.value for r in results)
        emit_ms, paced = await self.paced(paced_ids, paced_bodies, tally.paced_sent)
        tally.emit_ms += emit_ms
        tally.outcomes.update(r.outcome.value for r in paced)

    async def row(self, size: int, mode: str, tally: Tally) -> dict[str, Any]:
        """The figures of one size in one mode, from its tally and what the sink saw."""
        arrived = await self.arrivals()
        history_bytes, history_events = await self.history(tally.workflow)

        def latencies(sent: dict[str, float]) -> list[float]:
            return [(arrived[i][0] - t) * 1000 for i, t in sent.items() if i in arrived]

        n = tally.events
        sample_id = self.event_id(size, mode, "x00", 0)
        cpu = {k: round(v * 1000 / n, 2) for k, v in tally.cpu.items()}
        stack = round(
            (tally.cpu["hub"] + tally.cpu["server"] + tally.cpu["postgres"]) * 1000 / n, 2
        )
        p50, p95 = quantiles(latencies(tally.paced_sent))
        burst_p50, burst_p95 = quantiles(latencies(tally.burst_sent))
        expected = [*tally.burst_sent, *tally.paced_sent]
        row = {
            "size": size,
            "event_bytes": event_bytes(Event(id=sample_id, name=EVENT, data=self.data(size, 1)[0])),
            "mode": mode,
            "events_per_s": round(n / tally.elapsed, 1),
            "hub_cpu_ms_per_event": cpu["hub"],
            "server_cpu_ms_per_event": cpu["server"],
            "postgres_cpu_ms_per_event": cpu["postgres"],
            "stack_cpu_ms_per_event": stack,
            "others_cpu_ms_per_event": cpu["others"],
            "p50_ms": p50,
            "p95_ms": p95,
            "emit_p50_ms": round(percentile(tally.emit_ms, 50), 2),
            "burst_p50_ms": burst_p50,
            "burst_p95_ms": burst_p95,
            "history_bytes": history_bytes,
            "history_events": history_events,
            "claims_rows_per_event": round(tally.claim_rows / n, 2),
            "claims_bytes_per_event": round(tally.claim_bytes / n),
            "outcomes": dict(tally.outcomes),
            "lost": sum(1 for i in expected if i not in arrived),
            "duplicated": sum(len(arrived[i]) - 1 for i in expected if i in arrived),
        }
        say(
            f"{size:>7} B {mode:<6} {row['events_per_s']:6.1f} ev/s, CPU/ev hub {cpu['hub']:.1f}"
            f" stack {stack:.1f} others {cpu['others']:.1f} ms, p50 {p50} ms,"
            f" history {history_bytes} B"
        )
        return row


# the run


async def bench(
    args: argparse.Namespace, server: TemporalDevServer, sink: subprocess.Popen[bytes], port: int
) -> dict[str, Any]:
    """Database, worker and client; every size in both modes (order alternating)."""
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    limit = max(1024 * 1024, 2 * max(args.sizes))
    async with scratch_database(args.dsn) as dsn:
        database = urlsplit(dsn).path.lstrip("/")
        settings = Settings(
            database_url=dsn,
            temporal_address=server.address,
            task_queue=f"bench-claims-{secrets.token_hex(3)}",
            rule_cache_seconds=30,
            secret_key=Fernet.generate_key().decode(),  # the payload codec on, as in production
            egress_allow="127.0.0.1/32",  # the sink is on loopback
            max_event_bytes=limit,
            max_payload_bytes=limit,
        )
        temporal = await connect_temporal(settings)
        box = SecretBox.from_settings(settings)
        async with (
            running_worker(settings, temporal=temporal),
            Store.open(dsn, box=box, egress=settings.egress_policy) as store,
            HubClient.connect(settings, temporal=temporal, store=store) as hub,
        ):
            sink_url = f"http://127.0.0.1:{port}"
            service = await store.services.create(ServiceIn(name="bench-claims", base_url=sink_url))
            await store.rules.create(
                RuleIn(event=EVENT, service=service.name, endpoint=PATH, template="")
            )
            await hub.index.refresh(min_version=await store.rules.config_version())
            assert server.process is not None
            cpu = Cpu(server.process.pid, sink.pid, database)
            runner = Bench(args, hub, store, sink_url, cpu)
            try:
                rows, skipped = await sweep(args, runner)
            finally:
                set_limits(None)
                await runner.sink.aclose()
    return {"rows": rows, "skipped": skipped, "log_warnings": warnings.count}


async def sweep(args: argparse.Namespace, runner: Bench) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every size: each mode warmed up, then --rounds blocks per mode, in A B B A order."""
    rows, skipped = [], []
    for k, size in enumerate(args.sizes):
        modes = ["inline", "claim"] if k % 2 == 0 else ["claim", "inline"]
        if not inline_fits(size):
            modes.remove("inline")
            reason = f"inline payload would pass Temporal's {TEMPORAL_PAYLOAD_LIMIT} B limit"
            skipped.append({"size": size, "mode": "inline", "reason": reason})
            say(f"{size} B: inline skipped ({reason})")
        tallies = {mode: Tally() for mode in modes}
        async with asyncio.timeout(args.phase_timeout):
            for mode in modes:
                await runner.warm(size, mode)
            for part in range(args.rounds):
                for mode in modes if part % 2 == 0 else modes[::-1]:
                    await runner.block(size, mode, part, tallies[mode])
        rows += [await runner.row(size, mode, tallies[mode]) for mode in MODES if mode in modes]
    return rows, skipped


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per size: claim-checked relative to inline (ratios, and differences in ms)."""
    by = {(r["size"], r["mode"]): r for r in rows}
    out = []
    for size in sorted({r["size"] for r in rows}):
        inline, claim = by.get((size, "inline")), by.get((size, "claim"))
        if inline is None or claim is None:
            continue
        out.append(
            {
                "size": size,
                "eps_ratio": round(claim["events_per_s"] / inline["events_per_s"], 3),
                "hub_cpu_ms_delta": round(
                    claim["hub_cpu_ms_per_event"] - inline["hub_cpu_ms_per_event"], 2
                ),
                "stack_cpu_ms_delta": round(
                    claim["stack_cpu_ms_per_event"] - inline["stack_cpu_ms_per_event"], 2
                ),
                "p50_ms_delta": round((claim["p50_ms"] or 0) - (inline["p50_ms"] or 0), 1),
                "history_ratio": round(claim["history_bytes"] / inline["history_bytes"], 3),
            }
        )
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-n", "--events", type=int, default=300, help="events per burst")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="event sizes in bytes")
    parser.add_argument("--latency-events", type=int, default=100, help="events per paced run")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s when paced")
    parser.add_argument("--concurrency", type=int, default=50, help="emits in flight (burst)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured events per mode")
    parser.add_argument(
        "--rounds", type=int, default=4, help="blocks per mode and size, order alternating"
    )
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="seconds per size")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if (
        min(args.events, args.latency_events, args.concurrency, args.rounds, *args.sizes) < 1
        or args.rate <= 0
    ):
        parser.error("counts, sizes and --rate must be positive")
    if min(args.events, args.latency_events) < args.rounds or args.rounds > 99:
        parser.error("--rounds must be at most 99, and at most --events and --latency-events")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-claims-"))
    began = time.perf_counter()
    # Both children from the main thread, before any other: they die with this process.
    server = TemporalDevServer(
        port=free_port(), db_file=tmp / "temporal.db", log_file=tmp / "temporal.log"
    )
    sink = None
    try:
        server.start()
        sink, port = start_sink(tmp)
        say(f"Temporal dev server on {server.address}, sink on port {port}")
        figures = asyncio.run(bench(args, server, sink, port))
    except KeyboardInterrupt:
        say("interrupted; everything started has been stopped")
        return 130
    finally:
        if sink is not None:
            stop_sink(sink)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "claim_vs_inline": compare(figures["rows"]),
        **figures,
        "events": args.events,
        "latency_events": args.latency_events,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "template": "whole event",
        "codec": "on",
        "production_thresholds": {
            "EVENT_INLINE_MAX": EVENT_INLINE_MAX,
            "PAYLOAD_INLINE_MAX": PAYLOAD_INLINE_MAX,
            "PLAN_INLINE_BUDGET": PLAN_INLINE_BUDGET,
        },
        "nproc": os.cpu_count(),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
