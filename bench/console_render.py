"""Server-side render times of the console's pages, on a big DLQ and delivery log.

    .venv/bin/python bench/console_render.py [--dlq-rows 10000] [--log-rows 1000000]
        [--days 7] [--runs 9] [--temporal-address HOST:PORT]
        [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

In a scratch database (bench.run.scratch_database, dropped at the end), through the
migrations' schema: the services of bench/log_scale.py (two circuits open), --dlq-rows
unresolved DLQ rows over 30 days, and --log-rows delivery-log rows over --days days up to a
minute ago (INSERT … SELECT generate_series, indexes built after the fill, then VACUUM
ANALYZE). A Temporal dev server (unless --temporal-address), a worker in this process and a
bare HTTP sink deliver a few real events, so the event pages have workflows to show.

Then the app as ``hub api`` builds it (create_app + mount_console) is driven in process over
ASGI, signed in as the admin: each page is fetched once to warm up, then --runs times; the
median and the slowest are reported, in ms. The target is < 200 ms each.

Prints ONE JSON line on stdout; progress goes to stderr. Run by hand, never from tests.
"""

import argparse
import asyncio
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.log_scale import SERVICES, fill, without_indexes
from bench.run import say, scratch_database
from bench.sink import Recorder, SinkProtocol
from hub.api import create_app
from hub.client import HubClient
from hub.config import Settings
from hub.console.app import mount_console
from hub.core.models import RuleIn, ServiceIn
from hub.engine.worker import running_worker
from hub.runtime.embedded import TemporalDevServer, free_port
from hub.store import migrate

TARGET_MS = 200.0
TOKEN = secrets.token_urlsafe(24)
EVENTS = 20

DLQ_FILL = """
    INSERT INTO dlq (created_at, event_id, event_name, event, rule_id, service, method,
        endpoint, payload, error, attempts, workflow_id, delivery_id)
    SELECT now() - (g % 30) * interval '1 day' - (g % 1440) * interval '1 minute',
           'd' || g, 'order.' || (g % 10),
           jsonb_build_object('id', 'd' || g, 'name', 'order.' || (g % 10),
                              'data', jsonb_build_object('n', g)),
           1, ($2::text[])[1 + g % array_length($2::text[], 1)], 'POST', '/hooks',
           '{"id": ' || g || ', "note": "a stored payload"}',
           'HTTP 503: upstream timed out', 5, 'event-d' || g, 'd' || g || ':1'
    FROM generate_series(1, $1) AS g"""


async def fill_database(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    """Services with circuits (two open), DLQ rows, then the log without its indexes,
    which are built afterwards, as a restore would."""
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        for name in SERVICES:
            await conn.execute(
                "INSERT INTO services (name, type, base_url) VALUES ($1, 'http', 'https://x')",
                name,
            )
        await conn.execute(
            """UPDATE circuit_state SET state = 'open', failures = 5, opened_at = now()
               WHERE service_id IN
                   (SELECT id FROM services WHERE name IN ('svc-flaky', 'rare-2'))"""
        )
        await conn.execute(DLQ_FILL, args.dlq_rows, SERVICES)
        rebuild = await without_indexes(conn)
        say(f"filling {args.log_rows:,} log rows over {args.days} days")
        fill_s = await fill(conn, args.log_rows, args.days, partitioned=True)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in rebuild:
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
        return {
            "log_rows": await conn.fetchval("SELECT count(*) FROM delivery_log"),
            "dlq_rows": await conn.fetchval("SELECT count(*) FROM dlq WHERE resolved_at IS NULL"),
            "services": await conn.fetchval("SELECT count(*) FROM services"),
            "fill_s": round(fill_s, 1),
        }
    finally:
        await conn.close()


@asynccontextmanager
async def temporal_server(address: str | None) -> AsyncIterator[str]:
    if address:
        yield address
        return
    with tempfile.TemporaryDirectory() as folder:
        server = TemporalDevServer(port=free_port(), db_file=Path(folder) / "temporal.db")
        server.start()
        try:
            yield server.address
        finally:
            server.stop()


@asynccontextmanager
async def sink() -> AsyncIterator[str]:
    """bench/sink.py's bare protocol, in this process: answers 200 at once."""
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(Recorder()), "127.0.0.1", port)
    async with server:
        yield f"http://127.0.0.1:{port}"


async def deliver_events(settings: Settings, sink_url: str) -> list[str]:
    """A service on the sink, a rule, and EVENTS events delivered; their ids."""
    async with HubClient.connect(settings) as hub:
        store = hub.store
        await store.services.create(ServiceIn(name="bench-sink", base_url=sink_url))
        await store.rules.create(RuleIn(event="bench.*", service="bench-sink", endpoint="/hooks"))
        await hub.index.refresh(min_version=await store.rules.config_version())
        ids = [f"bench-{n}" for n in range(EVENTS)]
        for event_id in ids:
            await hub.emit("bench.created", {"n": event_id}, event_id=event_id, wait=True)
        return ids


def pages(event_id: str) -> dict[str, str]:
    return {
        "overview": "/ui/",
        "overview_panels": "/ui/overview/panels",
        "services": "/ui/services",
        "rules": "/ui/rules",
        "events_search_id": f"/ui/events?q={event_id}",
        "events_search_name": "/ui/events?q=bench.created",
        "event_detail": f"/ui/events/{event_id}",
        "dlq": "/ui/dlq",
        "dlq_filtered": "/ui/dlq?service=svc-orders&event=order.3&age=gt7d",
        "logs": "/ui/logs",
        "logs_filtered": "/ui/logs?service=svc-orders&status=failed",
        "logs_rare_service": "/ui/logs?service=svc-tiny",
    }


async def sign_in(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/login", data={"token": TOKEN})
    assert response.status_code in (200, 303), (response.status_code, response.text[:300])
    assert "hub_session" in client.cookies, "sign-in set no session cookie"


async def time_pages(client: httpx.AsyncClient, urls: dict[str, str], runs: int) -> Any:
    results: dict[str, dict[str, float]] = {}
    for name, url in urls.items():
        samples = []
        for n in range(runs + 1):
            started = time.perf_counter()
            response = await client.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code, response.text[:300])
            if n:  # the first one warms up
                samples.append(elapsed)
        ordered = sorted(samples)
        results[name] = {
            "median_ms": round(statistics.median(ordered) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1),
            "bytes": len(response.content),
        }
        say(f"{name} {url}: {results[name]}")
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with (
        scratch_database(args.dsn) as dsn,
        temporal_server(args.temporal_address) as address,
        sink() as sink_url,
    ):
        data = await fill_database(dsn, args)
        settings = Settings(
            database_url=dsn,
            temporal_address=address,
            task_queue=f"bench-console-{secrets.token_hex(3)}",
            api_token=SecretStr(TOKEN),
            egress_allow="127.0.0.1/32",
        )
        async with running_worker(settings):
            say(f"delivering {EVENTS} events")
            ids = await deliver_events(settings, sink_url)
        app = create_app(settings)
        mount_console(app, settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1", timeout=60
            ) as client,
        ):
            await sign_in(client)
            timings = await time_pages(client, pages(ids[len(ids) // 2]), args.runs)
    worst = max(t["median_ms"] for t in timings.values())
    return {
        "bench": "console_render",
        "python": platform.python_version(),
        "runs": args.runs,
        "data": data,
        "pages": timings,
        "slowest_median_ms": worst,
        "target_ms": TARGET_MS,
        "within_target": worst < TARGET_MS,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--dlq-rows", type=int, default=10_000)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--temporal-address", default=None)
    return parser.parse_args()


def main() -> None:
    print(json.dumps(asyncio.run(run(parse_args()))), flush=True)


if __name__ == "__main__":
    main()
