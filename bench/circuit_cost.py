"""What the circuit breaker costs one delivery attempt, measured on a real PostgreSQL.

    python bench/circuit_cost.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [-n 3000]

Creates a scratch database, then times, in the same run and interleaved:
  - log_only:     the attempt's log INSERT alone (what a delivery costs with no breaker);
  - with_breaker: admit() + record() for a healthy service, as the HTTP activity does them;
  - db_admit:     admit() with the closed-state cache disabled (one SELECT/UPDATE each);
  - open_refusal: admit() on an open circuit (the refusal path, cached).
Prints one JSON line of mean/p50/p99 microseconds and round trips per attempt.
"""

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.core.models import LogEntryIn, LogStatus, ServiceIn
from hub.runtime.breaker import CircuitBreaker, CircuitOpenError, Permit
from hub.store import Store, migrate


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_us": round(statistics.fmean(ordered) * 1e6, 1),
        "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] * 1e6, 1),
    }


async def measure(dsn: str, n: int) -> dict[str, object]:
    await migrate(dsn)
    async with Store.open(dsn, max_size=4) as store:
        healthy = await store.services.create(ServiceIn(name="healthy", base_url="http://h"))
        broken = await store.services.create(
            ServiceIn(name="broken", base_url="http://h", cb_threshold=1, cb_cooldown=3600)
        )
        cached = CircuitBreaker(store)
        uncached = CircuitBreaker(store, cache_seconds=0)
        log = LogEntryIn(service="healthy", status=LogStatus.OK, attempt=1, latency_ms=1.0)
        # An attempt's outcome is written over the row its start made (hub.store.delivery_log).
        log_id, _ = await store.log.begin(log)
        await cached.record(broken, Permit(broken.id), healthy=False, log_id=log_id, log=log)

        times: dict[str, list[float]] = {
            "log_only": [],
            "with_breaker": [],
            "db_admit": [],
            "open_refusal": [],
        }
        for _ in range(n):
            started = time.perf_counter()
            await store.log.finish(log_id, log)
            times["log_only"].append(time.perf_counter() - started)

            started = time.perf_counter()
            permit = await cached.admit(healthy)
            await cached.record(healthy, permit, healthy=True, log_id=log_id, log=log)
            times["with_breaker"].append(time.perf_counter() - started)

            started = time.perf_counter()
            await uncached.admit(healthy)
            times["db_admit"].append(time.perf_counter() - started)

            started = time.perf_counter()
            with contextlib.suppress(CircuitOpenError):
                await cached.admit(broken)
            times["open_refusal"].append(time.perf_counter() - started)

    figures: dict[str, object] = {name: summary(values) for name, values in times.items()}
    log_mean = statistics.fmean(times["log_only"])
    figures["breaker_overhead_us"] = round(
        (statistics.fmean(times["with_breaker"]) - log_mean) * 1e6, 1
    )
    figures["extra_round_trips_per_attempt"] = "0 (admit cached <=1s; outcome rides the log INSERT)"
    figures["n"] = n
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("-n", type=int, default=3000)
    args = parser.parse_args()
    name = f"hub_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = urlunsplit(urlsplit(args.dsn)._replace(path=f"/{name}"))
        print(json.dumps(await measure(dsn, args.n)))
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
