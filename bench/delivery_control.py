"""Delivery control figures: priority, fairness, rate limits, ordering and holding.

    .venv/bin/python bench/delivery_control.py [--only priority,fairness,load,rate,ordering,holding]
        [--low 5000] [--high 50] [--fair-each 2000] [--load 10000] [--rate-events 200] ...

Starts what it measures the way bench/run.py does (and with its helpers): a scratch
PostgreSQL database, a Temporal dev server as ``hub dev`` runs it (priority and fairness on),
the fast HTTP sink, and hub workers (``python worker.py``), one per scenario on a task queue
of its own, started after the scenario's backlog is queued. Groups:

  priority  p50/p99 of high-priority events emitted while --low low-priority ones are queued,
            against the same run with every rule at the default priority
  fairness  two services of weights 1 and 2, both backlogged: their delivery ratio
  load      one service's latency while another has --load queued deliveries, and unloaded
  rate      PostgreSQL GCRA (circuit_state.rate_tat) against a task queue rate limit
            (max_task_queue_activities_per_second): achieved rate and cost
  ordering  events over keys with an ordered rule and a sink failing at random: order,
            losses and cost against the same rule unordered
  holding   deliveries held by a paused service: history size and worker RSS

Prints ONE JSON line on stdout; progress goes to stderr. Not a test: run it by hand.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.control_costs import holding_group, ordering_group, rate_group
from bench.control_lab import Lab, latency_under, stats
from bench.run import Children, bench_parser, git_commit, run_scratch, say

GROUPS = ("priority", "fairness", "load", "rate", "ordering", "holding")


async def priority_group(lab: Lab) -> None:
    """High-priority latency with a low-priority backlog, with and without priorities."""
    out: dict[str, Any] = {"low_queued": lab.args.low, "high_events": lab.args.high}
    for mode, low, high in (("priorities", 5, 1), ("equal", 3, 3)):
        service = await lab.service(f"prio-{mode}")
        await lab.rule(f"{mode}.bulk", service, endpoint=f"/{mode}/bulk", priority=low)
        await lab.rule(f"{mode}.urgent", service, endpoint=f"/{mode}/urgent", priority=high)
        queue = lab.queue(f"prio-{mode}")
        async with lab.emitter(queue) as hub:
            await lab.emit_many(hub, f"{mode}.bulk", lab.ids(f"{mode}-bulk", lab.args.low))
            say(f"priority/{mode}: {lab.args.low} low-priority events queued")
            async with lab.worker(queue):
                latencies = await latency_under(
                    lab, hub, f"{mode}.urgent", f"/{mode}/urgent", f"{mode}-urgent"
                )
                bulk_done = len(await lab.arrivals(f"/{mode}/bulk"))
        out[mode] = {**stats(latencies), "low_delivered_meanwhile": bulk_done}
        say(f"priority/{mode}: {out[mode]}")
    lab.figures["priority"] = out


async def fairness_group(lab: Lab) -> None:
    """Weights 1 and 2, both backlogged: deliveries of each until the first one runs out."""
    each = lab.args.fair_each
    light = await lab.service("fair-w1", weight=1)
    heavy = await lab.service("fair-w2", weight=2)
    await lab.rule("fair.light", light, endpoint="/fair/light")
    await lab.rule("fair.heavy", heavy, endpoint="/fair/heavy")
    queue = lab.queue("fair")
    async with lab.emitter(queue) as hub:
        await lab.emit_many(hub, "fair.light", lab.ids("light", each))
        await lab.emit_many(hub, "fair.heavy", lab.ids("heavy", each))
        async with lab.worker(queue):
            began = time.time()

            async def one_ran_out() -> bool:
                paths = [r[1] for r in await lab.records()]
                return each in (paths.count("/fair/light"), paths.count("/fair/heavy"))

            await lab.until(one_ran_out, "fairness backlog")
    records = [r for r in await lab.records() if r[1] in ("/fair/light", "/fair/heavy")]
    counts = {"/fair/light": 0, "/fair/heavy": 0}
    for _, path, _ in records:
        counts[path] += 1
        if each in counts.values():
            break
    ratio = counts["/fair/heavy"] / max(1, counts["/fair/light"])
    lab.figures["fairness"] = {
        "backlog_each": each,
        "weight1_delivered": counts["/fair/light"],
        "weight2_delivered": counts["/fair/heavy"],
        "ratio_w2_to_w1": round(ratio, 2),
        "seconds": round(records[-1][0] - began, 1) if records else None,
    }
    say(f"fairness: {lab.figures['fairness']}")


async def load_group(lab: Lab) -> None:
    """Service B's latency at --high-rate, unloaded and with A's --load deliveries queued."""
    out: dict[str, Any] = {"queued": lab.args.load, "events": lab.args.high}
    for mode, backlog in (("unloaded", 0), ("loaded", lab.args.load)):
        bulk = await lab.service(f"load-a-{mode}")
        probe = await lab.service(f"load-b-{mode}")
        await lab.rule(f"{mode}.a", bulk, endpoint=f"/load/{mode}/a")
        await lab.rule(f"{mode}.b", probe, endpoint=f"/load/{mode}/b")
        queue = lab.queue(f"load-{mode}")
        async with lab.emitter(queue) as hub:
            if backlog:
                took = await lab.emit_many(hub, f"{mode}.a", lab.ids(f"{mode}-a", backlog))
                say(f"load: {backlog} deliveries queued in {took:.0f}s")
            async with lab.worker(queue):
                latencies = await latency_under(
                    lab, hub, f"{mode}.b", f"/load/{mode}/b", f"{mode}-b"
                )
                a_done = len(await lab.arrivals(f"/load/{mode}/a"))
        out[mode] = {**stats(latencies), "a_delivered_meanwhile": a_done}
        say(f"load/{mode}: {out[mode]}")
    lab.figures["load"] = out


GROUP_RUNS: dict[str, Callable[[Lab], Awaitable[None]]] = {
    "priority": priority_group,
    "fairness": fairness_group,
    "load": load_group,
    "rate": rate_group,
    "ordering": ordering_group,
    "holding": holding_group,
}


async def run_groups(args: argparse.Namespace, children: Children, tmp: Path) -> dict[str, Any]:
    lab = Lab(args, children, tmp)
    async with contextlib.AsyncExitStack() as stack:
        await lab.start(stack)
        for group in args.only:
            load_before = os.getloadavg()
            began = time.perf_counter()
            say(f"group {group} …")
            try:
                await GROUP_RUNS[group](lab)
            except Exception as error:  # one group's failure leaves the others their run
                say(f"{group} failed: {error!r}")
                lab.figures[group] = {"error": repr(error)[:300]}
            lab.figures.setdefault(group, {})["wall_s"] = round(time.perf_counter() - began, 1)
            lab.figures[group]["loadavg_1m_before_after"] = [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ]
    return lab.figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, GROUPS, "group(s)")
    add = parser.add_argument
    add("--low", type=int, default=5000, help="priority: low-priority events queued")
    add("--high", type=int, default=50, help="priority/load: probe events measured")
    add("--high-rate", type=float, default=5.0, help="priority/load: probe events per second")
    add("--fair-each", type=int, default=2000, help="fairness: backlog of each service")
    add("--load", type=int, default=10000, help="load: deliveries queued for the busy service")
    add("--limit", type=float, default=20.0, help="rate: the limit, per second")
    add("--rate-events", type=int, default=200, help="rate: deliveries per method")
    add("--ordered-events", type=int, default=1000, help="ordering: events (each mode)")
    add("--keys", type=int, default=10, help="ordering: distinct keys")
    add("--fail-rate", type=float, default=0.1, help="ordering: share of requests failed")
    add("--held", type=int, default=10000, help="holding: deliveries held")
    add("--hold-seconds", type=float, default=60, help="holding: how long to hold them")
    add("--release-rate", type=float, default=100, help="holding: HUB_RELEASE_RATE on resume")
    add("--worker-slots", type=int, help="workers' activity and workflow task slots each")
    add("--concurrency", type=int, default=50, help="emits in flight")
    add("--stall-seconds", type=float, default=900, help="give up a wait after this long")
    add("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    ran = run_scratch("hub-dc-bench-", lambda children, tmp: run_groups(args, children, tmp))
    if ran is None:
        return 130
    figures, _, began = ran
    out = {
        **figures,
        "args": {k: v for k, v in vars(args).items() if k != "dsn"},
        "nproc": os.cpu_count(),
        "commit": git_commit(),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
