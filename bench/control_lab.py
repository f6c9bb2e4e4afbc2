"""The scratch world bench/delivery_control.py measures in: servers, services, workers, sinks."""

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.client import Client

from bench.run import (
    BENCH,
    Child,
    Children,
    percentile,
    rounded,
    say,
    scratch_database,
    wait_for_port,
)
from hub.client import HubClient
from hub.config import Settings
from hub.core.models import RuleIn, Service, ServiceIn
from hub.engine.namespace import ensure_search_attributes
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, free_port
from hub.store import Store, migrate

MB = 1024 * 1024


def stats(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of latencies in ms (None when nothing arrived)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": rounded(percentile(values, 50), 1),
        "p99_ms": rounded(percentile(values, 99), 1),
        "max_ms": rounded(max(values), 1),
    }


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most arrivals within any window of that many seconds."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def postgres_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]


class Lab:
    """The stack every group shares; hub workers are started per scenario."""

    def __init__(self, args: argparse.Namespace, children: Children, tmp: Path) -> None:
        self.args, self.children, self.tmp = args, children, tmp
        self.run = secrets.token_hex(3)
        self.figures: dict[str, Any] = {}
        self.dsn = self.address = self.sink_url = ""
        self.server: psutil.Process | None = None
        self.store: Store
        self.temporal: Client
        self.http = httpx.AsyncClient(timeout=60)

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        self.dsn = await stack.enter_async_context(scratch_database(self.args.dsn))
        await migrate(self.dsn)
        server = TemporalDevServer(
            port=free_port(), db_file=self.tmp / "temporal.db", log_file=self.tmp / "temporal.log"
        )
        stack.callback(server.stop)
        self.children.cleanups.append(server.stop)
        await asyncio.to_thread(server.start)
        assert server.process is not None
        self.server = psutil.Process(server.process.pid)
        self.address = server.address
        port = free_port()
        cmd = [sys.executable, str(BENCH / "sink.py"), "--port", str(port)]
        sink = self.children.start("sink", cmd, self.tmp / "sink.log")
        stack.push_async_callback(self.children.stop, [sink])
        await wait_for_port(port, sink)
        self.sink_url = f"http://127.0.0.1:{port}"
        self.store = await stack.enter_async_context(Store.open(self.dsn, max_size=8))
        self.temporal = await connect_temporal(self.settings("unused"))
        # Emits come before any worker (which would register them) in most groups.
        await ensure_search_attributes(self.temporal, "default")
        stack.push_async_callback(self.http.aclose)
        say(f"stack up: Temporal {self.address}, sink {self.sink_url}")

    def settings(self, queue: str) -> Settings:
        return Settings(database_url=self.dsn, temporal_address=self.address, task_queue=queue)

    def queue(self, name: str) -> str:
        return f"dc-{name}-{self.run}"

    @contextlib.asynccontextmanager
    async def emitter(self, queue: str) -> AsyncIterator[HubClient]:
        settings = self.settings(queue)
        async with HubClient.connect(settings, temporal=self.temporal, store=self.store) as hub:
            await hub.index.refresh(min_version=await self.store.rules.config_version())
            yield hub

    @contextlib.asynccontextmanager
    async def worker(self, queue: str, **extra: str) -> AsyncIterator[Child]:
        """A hub worker process polling queue, stopped (gracefully) on exit."""
        env = {
            **os.environ,
            **extra,
            "HUB_DATABASE_URL": self.dsn,
            "HUB_TEMPORAL_ADDRESS": self.address,
            "HUB_TASK_QUEUE": queue,
            "HUB_EGRESS_ALLOW": "127.0.0.1",
        }
        if self.args.worker_slots:
            slots = str(self.args.worker_slots)
            env["HUB_MAX_CONCURRENT_ACTIVITIES"] = env["HUB_MAX_CONCURRENT_WORKFLOW_TASKS"] = slots
        cmd = [sys.executable, "worker.py"]
        child = self.children.start(f"worker-{queue}", cmd, self.tmp / f"{queue}.log", env)
        try:
            await child.ready("worker on task queue")
            yield child
        finally:
            await self.children.stop([child])

    async def service(self, name: str, **fields: Any) -> Service:
        values = {"name": f"{name}-{self.run}", "base_url": self.sink_url, **fields}
        return await self.store.services.create(ServiceIn.model_validate(values))

    async def rule(self, event: str, service: Service, **fields: Any) -> None:
        await self.store.rules.create(
            RuleIn.model_validate({"event": event, "service": service.name, **fields})
        )

    async def records(self) -> list[list[Any]]:
        response = await self.http.get(f"{self.sink_url}/_records")
        response.raise_for_status()
        return list(response.json())

    async def arrivals(self, path: str) -> dict[str, float]:
        """First arrival time of each event id at path."""
        first: dict[str, float] = {}
        for at, where, rid in await self.records():
            if where == path:
                first.setdefault(rid, at)
        return first

    async def until(self, done: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + self.args.stall_seconds
        while not await done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not done in {self.args.stall_seconds:g}s")
            await asyncio.sleep(0.5)

    async def emit_many(self, hub: HubClient, event: str, ids: list[str]) -> float:
        """Emit events concurrently; the seconds it took."""
        gate = asyncio.Semaphore(self.args.concurrency)

        async def one(event_id: str) -> None:
            async with gate:
                await hub.emit(event, {"id": event_id}, event_id=event_id)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        return time.perf_counter() - began

    async def paced(
        self, hub: HubClient, event: str, ids: list[str], rate: float
    ) -> dict[str, float]:
        """Emit at rate events/s (each on time, whatever the others do); when each was sent."""
        sent: dict[str, float] = {}

        async def one(event_id: str) -> None:
            sent[event_id] = time.time()
            await hub.emit(event, {"id": event_id}, event_id=event_id)

        began, tasks = time.perf_counter(), []
        for n, event_id in enumerate(ids):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(event_id)))
        await asyncio.gather(*tasks)
        return sent

    def ids(self, prefix: str, count: int) -> list[str]:
        return [f"{self.run}-{prefix}-{i}" for i in range(count)]


async def latency_under(
    lab: Lab, hub: HubClient, event: str, path: str, prefix: str
) -> list[float]:
    """Emit --high events at --high-rate; their emit-to-arrival latencies once all arrived."""
    ids = lab.ids(prefix, lab.args.high)
    sent = await lab.paced(hub, event, ids, lab.args.high_rate)

    async def all_arrived() -> bool:
        return len(await lab.arrivals(path)) >= len(ids)

    await lab.until(all_arrived, f"{prefix} arrivals")
    first = await lab.arrivals(path)
    return [(first[i] - sent[i]) * 1000 for i in ids if i in first]
