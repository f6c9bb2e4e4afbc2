"""Cost curves: what one event costs as rules, event size, fan-out, open circuits and signing grow.

    .venv/bin/python bench/cost_curves.py [--only rules,size,fanout,open,signing] [--events 200]

Starts what it measures with bench/control_lab.py's Lab (bench/run.py's helpers): a scratch
PostgreSQL database, a Temporal dev server as ``hub dev`` runs it, the fast HTTP sink and
bench/curve_sink.py (which hashes bodies), and for every point a hub worker
(``python worker.py``) on a task queue of its own. Each point reports the CPU seconds per
event of the worker, the Temporal server and PostgreSQL (every local postgres process: other
users' load too), the machine and ``others`` (programs outside the benchmark), and the
deliveries lost or duplicated at the sink. Curves:

  rules    1, 100 and 10,000 rules (half wildcards), the event matching one: emit p50, the
           plan activity in this process (snapshot load, pattern build, plan), worker CPU
  size     1 KB, 100 KB and 1 MB of event data, paced: CPU, emit-to-sink latency, body hashes
  fanout   1, 5 and 50 services with one rule each on one event: CPU per delivery, rate
  open     0, 10 and 100 services with an open circuit next to one healthy service, each
           event to all of them, then each to the healthy one and one open service in turn:
           the healthy one's rate and latency, what held deliveries cost while they wait
           (worker RSS, CPU), then the held workflows terminated
  signing  one service unsigned and HMAC-signed: worker CPU per event, rate

Prints ONE JSON line on stdout; progress goes to stderr. Not a test: run it by hand.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.control_lab import Lab
from bench.curve_lab import sinks
from bench.curve_points import CURVES
from bench.run import Children, bench_parser, git_commit, run_scratch, say


def load() -> float:
    return round(os.getloadavg()[0], 2)


async def run_curves(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    """The stack once, then each curve; a curve that fails is reported and the next runs."""
    lab = Lab(args, children, tmp)
    out: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        await lab.start(stack)
        readers = await sinks(lab, stack)
        for name in args.only:
            began, load_before = time.perf_counter(), load()
            say(f"curve {name} …")
            figures = out[name] = {}
            try:
                await CURVES[name](lab, readers, figures)
            except Exception as error:
                say(f"{name} failed: {error!r}")
                figures["error"] = repr(error)[:400]
            figures["wall_s"] = round(time.perf_counter() - began, 1)
            figures["loadavg_1m"] = [load_before, load()]
    return out


def numbers(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, CURVES, "curve(s)")
    add = parser.add_argument
    add("--events", type=int, default=200, help="measured events per point")
    add("--big-events", type=int, default=40, help="events of the biggest points")
    add("--warmup", type=int, default=10, help="unmeasured events before each point")
    add("--rule-counts", type=numbers, default=[1, 100, 10000], help="rules: rule counts")
    add("--plan-calls", type=int, default=500, help="rules: in-process plan calls per point")
    add("--sizes", type=numbers, default=[1000, 100_000, 1_000_000], help="size: data bytes")
    add("--size-rate", type=float, default=10.0, help="size: events per second (emitted)")
    add("--big-rate", type=float, default=2.0, help="size: events per second of the 1 MB point")
    add("--fanouts", type=numbers, default=[1, 5, 50], help="fanout: services per event")
    add("--open-counts", type=numbers, default=[0, 10, 100], help="open: open circuits")
    add("--open-rate", type=float, default=10.0, help="open: events per second (emitted)")
    add("--open-cooldown", type=float, default=10.0, help="open: the open circuits' cooldown")
    add("--hold-seconds", type=float, default=15.0, help="open: watch the held ones this long")
    add("--concurrency", type=int, default=50, help="emits in flight in a burst")
    add("--worker-slots", type=int, help="workers' activity and workflow task slots each")
    add("--stall-seconds", type=float, default=300, help="give up a wait after this long")
    add("--keep", action="store_true", help="keep the temporary directory of the logs")
    add("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return parser.parse_args(argv)


def load_averages() -> list[float]:
    """The machine's 1, 5 and 15 minute load: other programs compete for its cores."""
    return [round(v, 2) for v in os.getloadavg()]


def main() -> int:
    args = parse_args()
    load_start = load_averages()
    say(f"load average {load_start}")
    ran = run_scratch("hub-curves-", lambda children, tmp: run_curves(args, children, tmp))
    if ran is None:
        return 130
    curves, tmp, began = ran
    if not args.keep:  # kept after a failure: its logs explain it
        shutil.rmtree(tmp, ignore_errors=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("dsn", "keep")}
    context: dict[str, Any] = {
        "loadavg_start": load_start,
        "loadavg_end": load_averages(),
        "args": settings,
    }
    context |= {"nproc": os.cpu_count(), "commit": git_commit()}
    print(json.dumps(curves | context | {"wall_s": round(time.perf_counter() - began, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
