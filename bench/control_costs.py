"""bench/delivery_control.py's cost groups: rate limits, ordering and holding."""

import asyncio
import contextlib
import json
import random
import time
from typing import Any

import httpx
import psutil
from temporalio.worker import Worker

from bench import sink as bench_sink
from bench.baseline import BaselineActivities, BaselineWorkflow, Post
from bench.control_lab import MB, Lab, cpu_seconds, max_in_window, postgres_processes, stats
from bench.run import (
    say,
)
from hub.runtime.embedded import free_port


async def rate_group(lab: Lab) -> None:
    """A per-service rate through the hub (PostgreSQL GCRA) and through a task queue limit."""
    rate, count = lab.args.limit, lab.args.rate_events
    out: dict[str, Any] = {"limit_per_s": rate, "events": count}
    out["gcra_statement"] = await gcra_statement_cost(lab, rate, count)
    limited = await lab.service("rate", rate=f"{rate:g}/s")
    await lab.rule("rate.gcra", limited, endpoint="/rate/gcra")
    queue = lab.queue("rate")
    async with lab.emitter(queue) as hub, lab.worker(queue) as worker:
        before = cost_now(lab, [worker.process])
        await lab.emit_many(hub, "rate.gcra", lab.ids("gcra", count))

        async def all_arrived() -> bool:
            return len(await lab.arrivals("/rate/gcra")) >= count

        await lab.until(all_arrived, "GCRA-limited deliveries")
        out["gcra_hub"] = accuracy(list((await lab.arrivals("/rate/gcra")).values()), rate)
        out["gcra_hub"]["cpu_ms_per_delivery"] = cost_since(lab, [worker.process], before, count)
    out["task_queue"] = await task_queue_limit(lab, rate, count)
    lab.figures["rate"] = out
    say(f"rate: {out}")


def cost_now(lab: Lab, workers: list[psutil.Process]) -> dict[str, float]:
    assert lab.server is not None
    return {
        "worker": cpu_seconds(workers),
        "server": cpu_seconds([lab.server]),
        "postgres": cpu_seconds(postgres_processes()),
    }


def cost_since(
    lab: Lab, workers: list[psutil.Process], before: dict[str, float], n: int
) -> dict[str, float]:
    """CPU milliseconds per delivery of each group since before (postgres: approximate,
    backends that exited meanwhile are missed)."""
    after = cost_now(lab, workers)
    return {k: round((after[k] - before[k]) * 1000 / n, 2) for k in after}


def accuracy(times: list[float], rate: float) -> dict[str, Any]:
    """Achieved rate over the run and the most arrivals in any second, against the limit."""
    if len(times) < 2:
        return {"achieved_per_s": None, "max_in_1s": len(times)}
    span = max(times) - min(times)
    return {
        "achieved_per_s": round((len(times) - 1) / span, 2) if span else None,
        "max_in_1s": max_in_window(times),
        "limit_per_s": rate,
    }


async def gcra_statement_cost(lab: Lab, rate: float, count: int) -> dict[str, Any]:
    """The reservation statement alone, from 20 concurrent callers: its latency, the
    schedule it hands out (accuracy) and PostgreSQL CPU per call."""
    service = await lab.service("gcra-raw")
    await lab.store.circuits.reserve(service.id, 1 / rate)  # creates the row
    latencies: list[float] = []
    slots: list[float] = []
    pg_before = cpu_seconds(postgres_processes())
    gate = asyncio.Semaphore(20)

    async def one() -> None:
        async with gate:
            began = time.perf_counter()
            wait = await lab.store.circuits.reserve(service.id, 1 / rate)
            latencies.append((time.perf_counter() - began) * 1000)
            slots.append(time.time() + max(0.0, wait))

    await asyncio.gather(*(one() for _ in range(count)))
    pg_ms = (cpu_seconds(postgres_processes()) - pg_before) * 1000 / count
    return {
        **{k: v for k, v in stats(latencies).items() if k != "max_ms"},
        "postgres_cpu_ms_per_call": round(pg_ms, 3),
        "scheduled": accuracy(slots, rate),
    }


async def task_queue_limit(lab: Lab, rate: float, count: int) -> dict[str, Any]:
    """bench/baseline.py's POST on a dedicated queue whose activities the server paces."""
    queue = lab.queue("tq-limit")
    me = psutil.Process()
    before = cost_now(lab, [me])
    async with httpx.AsyncClient() as http:
        activities = BaselineActivities(http)
        async with Worker(
            lab.temporal,
            task_queue=queue,
            workflows=[BaselineWorkflow],
            activities=[activities.post],
            max_task_queue_activities_per_second=rate,
        ):
            handles = [
                await lab.temporal.start_workflow(
                    BaselineWorkflow.run,
                    Post(f"{lab.sink_url}/rate/tq", rid, {"id": rid}),
                    id=f"tq-{rid}",
                    task_queue=queue,
                )
                for rid in lab.ids("tq", count)
            ]
            await asyncio.gather(*(h.result() for h in handles))
    figures = accuracy(list((await lab.arrivals("/rate/tq")).values()), rate)
    figures["cpu_ms_per_delivery"] = cost_since(lab, [me], before, count)
    figures["note"] = "worker = this bench process (it also starts the workflows)"
    return figures


class FlakyRecorder:
    """Fails a request at random (--fail-rate); records ``[time, path, id, status]``."""

    def __init__(self, fail_rate: float) -> None:
        self.fail_rate = fail_rate
        self.records: list[list[Any]] = []
        self.failed_last = False

    def add(self, path: str, headers: dict[bytes, bytes], body: bytes) -> None:
        self.failed_last = random.random() < self.fail_rate
        rid = headers.get(b"x-hub-event-id", b"").decode()
        self.records.append([time.time(), path, rid, 500 if self.failed_last else 200])

    def control(self, target: str) -> bytes:
        return json.dumps(self.records).encode()


class FlakyProtocol(bench_sink.SinkProtocol):
    """bench/sink.py's protocol, answering 500 when its recorder says so."""

    def __init__(self, recorder: FlakyRecorder) -> None:
        super().__init__(recorder)
        self.flaky = recorder

    def _reply(self) -> None:
        if not self.flaky.failed_last:
            return super()._reply()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")
        return None


def in_key_order(records: list[list[Any]], path: str, order: dict[str, int]) -> tuple[int, int]:
    """(events delivered, keys whose successful deliveries broke emission order)."""
    done: dict[str, float] = {}
    for at, where, rid, status in records:
        if where == path and status == 200:
            done.setdefault(rid, at)
    broken, last = set(), {}
    for rid in sorted(done, key=lambda r: done[r]):
        key, index = rid.rsplit("-", 2)[1], order[rid]
        if index < last.get(key, -1):
            broken.add(key)
        last[key] = index
    return len(done), len(broken)


async def ordering_group(lab: Lab) -> None:
    """--ordered-events over --keys keys, the sink failing at random, ordered and not."""
    recorder = FlakyRecorder(lab.args.fail_rate)
    port = free_port()
    server = await asyncio.get_running_loop().create_server(
        lambda: FlakyProtocol(recorder), "127.0.0.1", port
    )
    out: dict[str, Any] = {"events": lab.args.ordered_events, "keys": lab.args.keys}
    async with server:
        for mode, key in (("ordered", "data.key"), ("unordered", None)):
            service = await lab.service(
                f"order-{mode}",
                base_url=f"http://127.0.0.1:{port}",
                backoff=0.1,
                max_attempts=5,
                cb_threshold=1000,
            )
            await lab.rule(f"{mode}.ev", service, endpoint=f"/{mode}", order_key=key)
            out[mode] = await ordered_run(lab, recorder, mode)
            say(f"ordering/{mode}: {out[mode]}")
    lab.figures["ordering"] = out


async def ordered_run(lab: Lab, recorder: FlakyRecorder, mode: str) -> dict[str, Any]:
    """Emit one at a time (emission order is what the lanes keep), then wait for all."""
    count, keys = lab.args.ordered_events, lab.args.keys
    ids = [f"{lab.run}{mode}-k{i % keys}-{i}" for i in range(count)]
    order = {rid: i for i, rid in enumerate(ids)}
    queue = lab.queue(f"order-{mode}")
    async with lab.emitter(queue) as hub, lab.worker(queue) as worker:
        before = cost_now(lab, [worker.process])
        began = time.time()
        for i, rid in enumerate(ids):
            await hub.emit(f"{mode}.ev", {"id": rid, "key": f"k{i % keys}"}, event_id=rid)

        async def all_delivered() -> bool:
            return in_key_order(recorder.records, f"/{mode}", order)[0] >= count

        with contextlib.suppress(RuntimeError):
            await lab.until(all_delivered, f"{mode} deliveries")
        delivered, broken = in_key_order(recorder.records, f"/{mode}", order)
        cost = cost_since(lab, [worker.process], before, count)
    failures = sum(1 for r in recorder.records if r[1] == f"/{mode}" and r[3] == 500)
    return {
        "delivered": delivered,
        "lost": count - delivered,
        "keys_out_of_order": broken,
        "failed_requests": failures,
        "seconds": round(time.time() - began, 1),
        "cpu_ms_per_event": cost,
    }


async def holding_group(lab: Lab) -> None:
    """--held deliveries to a paused service: history and worker memory, then the release."""
    from hub.engine.holds import count_held, wake_held

    count = lab.args.held
    service = await lab.service("held")
    await lab.rule("held.ev", service, endpoint="/held")
    await lab.store.services.set_paused(service.name, True)
    queue = lab.queue("held")
    out: dict[str, Any] = {"held": count}
    release = {"HUB_RELEASE_RATE": f"{lab.args.release_rate:g}"}
    async with lab.emitter(queue) as hub, lab.worker(queue, **release) as worker:
        rss_idle = worker.process.memory_info().rss
        out["emit_s"] = round(await lab.emit_many(hub, "held.ev", lab.ids("held", count)), 1)

        async def all_held() -> bool:
            return await count_held(lab.temporal, service.name) >= count

        await lab.until(all_held, "held deliveries")
        peak = rss_idle
        for _ in range(int(lab.args.hold_seconds)):
            peak = max(peak, worker.process.memory_info().rss)
            await asyncio.sleep(1)
        out["worker_rss_mb"] = {
            "idle": round(rss_idle / MB, 1),
            "holding_peak": round(peak / MB, 1),
        }
        out["history"] = await history_sample(lab, lab.ids("held", count))
        out["network_requests_while_paused"] = len(await lab.arrivals("/held"))
        began = time.time()
        await lab.store.services.set_paused(service.name, False)
        await wake_held(lab.temporal, service.name)

        async def all_arrived() -> bool:
            return len(await lab.arrivals("/held")) >= count

        await lab.until(all_arrived, "released deliveries")
        times = list((await lab.arrivals("/held")).values())
        out["release"] = {
            "seconds": round(time.time() - began, 1),
            **accuracy(times, lab.args.release_rate),
        }
    lab.figures["holding"] = out
    say(f"holding: {out}")


async def history_sample(lab: Lab, ids: list[str], size: int = 20) -> dict[str, Any]:
    """History events and bytes of a sample of the held workflows."""
    lengths, sizes = [], []
    for rid in random.sample(ids, min(size, len(ids))):
        described = await lab.temporal.get_workflow_handle(f"event-{rid}").describe()
        info = described.raw_description.workflow_execution_info
        lengths.append(info.history_length)
        sizes.append(info.history_size_bytes)
    return {
        "events_max": max(lengths),
        "bytes_max": max(sizes),
        "bytes_mean": sum(sizes) // len(sizes),
    }
