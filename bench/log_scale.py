"""The delivery log at scale: listings, the scrape, retention and the migration, timed.

    .venv/bin/python bench/log_scale.py [--rows 20000000] [--days 35] [--retention 30]
        [--runs 7] [--dlq-rows 200000] [--migration-rows 2000000] [--write-attempts 20000]
        [--write-prefill 1000000] [--concurrency 8] [--skip write|migration|scale]
        [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Phases, each in a scratch database of its own (bench.run.scratch_database, dropped at the end):

  write      one attempt's log writes (LogStore.begin, then finish: the 'sending' row, then its
             outcome) from --concurrency tasks, on the log before migration 004 (migrations
             001-003) and after it, each prefilled with --write-prefill rows: attempts/s,
             latency, heap and index bytes per attempt, and the share of HOT updates.
  migration  migration 004 on --migration-rows rows of the old table spread over 30 days.
  scale      --rows rows spread over --days days (INSERT … SELECT generate_series, day by day,
             indexes built after the fill like a restore would), with services, DLQ rows and
             circuits; then, warm, the median of --runs runs of a listing with each filter
             (LogStore.recent, 50 rows, as `hub logs`), the /metrics scrape, and the
             begin+finish loop again at that size; last, a retention run (LogStore upkeep:
             partitions ahead, then the days past --retention dropped) while a writer
             inserts every 5 ms, whose slowest insert is reported.

Prints ONE JSON line on stdout; progress goes to stderr. Run by hand, never from tests.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import say, scratch_database
from hub.core.models import LogEntryIn, LogStatus
from hub.store import Store, migrate
from hub.store.delivery_log import listing

# 100 slots: a service's share of the traffic is its number of slots. svc-tiny takes
# one row in 10,007 on top; svc-flaky fails a third of its attempts; amqp-events gets most
# of the inbound rows (a response queue).
SLOTS = (
    ["svc-orders"] * 30
    + ["svc-users"] * 20
    + ["svc-billing"] * 10
    + ["svc-flaky"] * 5
    + [f"svc-{n}" for n in ("crm", "mail", "search", "erp", "lms") for _ in range(5)]
    + ["amqp-events"] * 5
    + [f"rare-{n}" for n in range(1, 6)]
)
SERVICES = sorted(set(SLOTS) | {"svc-tiny"})

FILL_DAY = """
    INSERT INTO delivery_log (created_at, direction, service, rule_id, event_id, event_name,
        delivery_id, workflow_id, method, target, status, status_code, latency_ms, attempt,
        error, response_excerpt)
    SELECT $1::timestamptz + (i * $5::interval / $2),
           CASE WHEN dir THEN 'in' ELSE 'out' END, svc, slot + 1, 'e' || (n / 2),
           'order.' || (slot % 10), 'e' || (n / 2) || ':' || (n % 2 + 1), 'event-e' || (n / 2),
           CASE WHEN dir THEN 'CONSUME' ELSE 'POST' END,
           'https://' || svc || '.example.com/hooks', st,
           CASE st WHEN 'ok' THEN 200 WHEN 'failed' THEN 503 END,
           (abs(hashint8(n * 3)) % 2000) / 10.0,
           CASE WHEN st = 'failed' THEN 1 + dice % 3 ELSE 1 END,
           CASE WHEN st = 'failed' THEN 'HTTP 503: upstream timed out'
                WHEN st = 'unknown' THEN 'no outcome recorded: the worker stopped' END,
           CASE WHEN st = 'ok' THEN '{"ok": true, "id": ' || n || '}' END
    FROM generate_series(0, $2 - 1) AS i,
    LATERAL (SELECT $3::bigint + i AS n) AS num,
    LATERAL (SELECT abs(hashint8(n)) % 100 AS slot, abs(hashint8(-n)) % 1000 AS dice) AS h,
    LATERAL (SELECT CASE WHEN n % 10007 = 0 THEN 'svc-tiny'
                         ELSE ($4::text[])[1 + slot] END AS svc,
                    dice < 40 OR (slot BETWEEN 90 AND 94 AND dice < 500) AS dir) AS s,
    LATERAL (SELECT CASE
        WHEN dir THEN CASE WHEN dice = 0 THEN 'failed' ELSE 'ok' END
        WHEN svc = 'svc-tiny' OR svc LIKE 'rare-%' THEN 'ok'
        WHEN dice BETWEEN 40 AND 89 OR (svc = 'svc-flaky' AND dice < 333) THEN 'failed'
        WHEN dice = 999 THEN 'unknown'
        ELSE 'ok' END AS st) AS o"""

DLQ_FILL = """
    INSERT INTO dlq (created_at, event_id, event_name, event, rule_id, service, method,
        endpoint, payload, error, attempts, workflow_id, delivery_id, resolved_at)
    SELECT now() - (g % 30) * interval '1 day', 'e' || g, 'order.created',
           jsonb_build_object('id', 'e' || g, 'name', 'order.created', 'data', '{}'::jsonb),
           1, ($2::text[])[1 + g % array_length($2::text[], 1)], 'POST', '/hooks',
           '{"id": ' || g || '}', 'HTTP 503', 5, 'event-e' || g, 'e' || g || ':1',
           CASE WHEN g % 20 <> 0 THEN now() END
    FROM generate_series(1, $1) AS g"""


def median_ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


async def fill(conn: asyncpg.Connection, rows: int, days: int, *, partitioned: bool) -> float:
    """``rows`` rows at an even rate over the ``days`` days up to a minute ago (today is
    partly filled); seconds taken."""
    started = time.perf_counter()
    now = datetime.now(UTC) - timedelta(minutes=1)
    today = datetime.combine(now.date(), datetime.min.time(), UTC)
    rate = rows / (days - 1 + (now - today) / timedelta(days=1))  # rows per day
    first = 0
    for back in range(days - 1, -1, -1):
        start = today - timedelta(days=back)
        span = min(timedelta(days=1), now - start)
        count = rows - first if back == 0 else round(rate * (span / timedelta(days=1)))
        if partitioned:
            await conn.execute("SELECT delivery_log_add_partition($1)", start.date())
        await conn.execute(FILL_DAY, start, count, first, SLOTS, span)
        first += count
        say(f"  filled {start.date()} ({days - back}/{days})")
    await conn.execute("SELECT setval('delivery_log_id_seq', (SELECT max(id) FROM delivery_log))")
    return time.perf_counter() - started


async def without_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the log's indexes (and primary key); return the statements that rebuild them."""
    rows = await conn.fetch(
        """SELECT c.relname, pg_get_indexdef(c.oid) AS def, con.conname,
                  pg_get_constraintdef(con.oid) AS condef
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           LEFT JOIN pg_constraint con ON con.conindid = c.oid
           WHERE i.indrelid = 'delivery_log'::regclass"""
    )
    rebuild = []
    for r in rows:
        if r["conname"]:
            await conn.execute(f"ALTER TABLE delivery_log DROP CONSTRAINT {r['conname']}")
            rebuild.append(f"ALTER TABLE delivery_log ADD CONSTRAINT {r['conname']} {r['condef']}")
        else:
            await conn.execute(f"DROP INDEX {r['relname']}")
            rebuild.append(str(r["def"]).replace(" ON ONLY ", " ON "))
    return rebuild


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        """SELECT COALESCE(sum(pg_table_size(c.oid)), 0)::bigint AS heap,
                  COALESCE(sum(pg_indexes_size(c.oid)), 0)::bigint AS indexes
           FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE 'delivery_log%'"""
    )
    assert row is not None
    return {"heap": int(row["heap"]), "indexes": int(row["indexes"])}


async def update_stats(conn: asyncpg.Connection) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        """SELECT COALESCE(sum(n_tup_upd), 0)::bigint AS upd,
                  COALESCE(sum(n_tup_hot_upd), 0)::bigint AS hot
           FROM pg_stat_user_tables WHERE relname LIKE 'delivery_log%'"""
    )
    assert row is not None
    return int(row["upd"]), int(row["hot"])


async def attempts(store: Store, count: int, concurrency: int, tag: str) -> list[float]:
    """``count`` begin+finish pairs from ``concurrency`` tasks; each pair's seconds."""
    started_wf = datetime.now(UTC) - timedelta(seconds=1)
    samples: list[float] = []
    queue = iter(range(count))

    async def one_task() -> None:
        for n in queue:
            entry = LogEntryIn(
                service=SLOTS[n % 100],
                rule_id=n % 100,
                event_id=f"{tag}-{n}",
                event_name="order.created",
                delivery_id=f"{tag}-{n}:1",
                workflow_id=f"event-{tag}-{n}",
                method="POST",
                target="https://svc.example.com/hooks",
                status=LogStatus.SENDING,
                attempt=1,
            )
            t0 = time.perf_counter()
            log_id, _ = await store.log.begin(entry, workflow_started=started_wf)
            failed = n % 20 == 3
            entry.status = LogStatus.FAILED if failed else LogStatus.OK
            entry.status_code = 503 if failed else 200
            entry.latency_ms = 42.0
            entry.error = "HTTP 503" if failed else None
            entry.response_excerpt = None if failed else '{"ok": true}'
            await store.log.finish(log_id, entry)
            samples.append(time.perf_counter() - t0)

    await asyncio.gather(*(one_task() for _ in range(concurrency)))
    return samples


async def write_round(dsn: str, count: int, concurrency: int, tag: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        size0, (upd0, hot0) = await sizes(conn), await update_stats(conn)
        async with Store.open(dsn, max_size=concurrency) as store:
            t0 = time.perf_counter()
            samples = await attempts(store, count, concurrency, tag)
            elapsed = time.perf_counter() - t0
        await asyncio.sleep(1.5)  # backends flush their table statistics about every second
        size1, (upd1, hot1) = await sizes(conn), await update_stats(conn)
    finally:
        await conn.close()
    ordered = sorted(samples)
    return {
        "seconds": elapsed,
        "attempts": count,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "heap_bytes": size1["heap"] - size0["heap"],
        "index_bytes": size1["indexes"] - size0["indexes"],
        "updates": upd1 - upd0,
        "hot_updates": hot1 - hot0,
    }


def write_summary(rounds: list[dict[str, Any]]) -> dict[str, float]:
    n = sum(r["attempts"] for r in rounds)
    return {
        "attempts_per_s": round(n / sum(r["seconds"] for r in rounds), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 2),
        "p99_ms": round(max(r["p99_ms"] for r in rounds), 2),
        "heap_bytes_per_attempt": round(sum(r["heap_bytes"] for r in rounds) / n),
        "index_bytes_per_attempt": round(sum(r["index_bytes"] for r in rounds) / n),
        "hot_update_share": round(
            sum(r["hot_updates"] for r in rounds) / max(1, sum(r["updates"] for r in rounds)), 3
        ),
    }


async def write_phase(server: str, args: argparse.Namespace) -> dict[str, Any]:
    """The attempt's writes before migration 004 and after it, in A B B A rounds."""
    async with scratch_database(server) as before, scratch_database(server) as after:
        for dsn, until in ((before, 3), (after, None)):
            await migrate(dsn, until=until)
            conn = await asyncpg.connect(dsn)
            try:
                await fill(conn, args.write_prefill, 7, partitioned=until is None)
                await conn.execute("VACUUM ANALYZE delivery_log")
            finally:
                await conn.close()
        rounds: dict[str, list[dict[str, Any]]] = {"before_004": [], "after_004": []}
        half = args.write_attempts // 2
        for i, name in enumerate(("before_004", "after_004", "after_004", "before_004")):
            say(f"write: {name} round {i + 1}/4")
            dsn = before if name == "before_004" else after
            rounds[name].append(await write_round(dsn, half, args.concurrency, f"w{i}"))
        return {name: write_summary(r) for name, r in rounds.items()}


async def migration_phase(server: str, args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_database(server) as dsn:
        await migrate(dsn, until=3)
        conn = await asyncpg.connect(dsn)
        try:
            say(f"migration: filling {args.migration_rows:,} rows of the old table")
            await fill(conn, args.migration_rows, 30, partitioned=False)
            await conn.execute("VACUUM ANALYZE delivery_log")
            count = await conn.fetchval("SELECT count(*) FROM delivery_log")
        finally:
            await conn.close()
        say("migration: applying 004")
        started = time.perf_counter()
        applied = await migrate(dsn, until=4)
        seconds = time.perf_counter() - started
        conn = await asyncpg.connect(dsn)
        try:
            kept = await conn.fetchval("SELECT count(*) FROM delivery_log")
        finally:
            await conn.close()
        assert applied == ["004_partitioned_log.sql"] and kept == count, (applied, kept, count)
        return {"rows": count, "seconds": round(seconds, 2), "rows_per_s": round(count / seconds)}


async def scale_fill(conn: asyncpg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    """Services (with circuits, some open), DLQ rows, and the log: filled without its
    indexes, which are then built, as a restore would."""
    for name in SERVICES:
        await conn.execute(
            "INSERT INTO services (name, type, base_url) VALUES ($1, 'http', 'https://x')", name
        )
    await conn.execute(
        """UPDATE circuit_state SET state = 'open', failures = 5, opened_at = now()
           WHERE service_id IN (SELECT id FROM services WHERE name IN ('svc-flaky', 'rare-2'))"""
    )
    await conn.execute(DLQ_FILL, args.dlq_rows, SERVICES)
    rebuild = await without_indexes(conn)
    say(f"scale: filling {args.rows:,} rows over {args.days} days")
    fill_s = await fill(conn, args.rows, args.days, partitioned=True)
    await conn.execute("SET maintenance_work_mem = '512MB'")
    started = time.perf_counter()
    for statement in rebuild:
        say(f"scale: {statement[:70]}…")
        await conn.execute(statement)
    index_s = time.perf_counter() - started
    say("scale: VACUUM ANALYZE")
    await conn.execute("VACUUM ANALYZE delivery_log")
    await conn.execute("VACUUM ANALYZE dlq")
    return {
        "rows": await conn.fetchval("SELECT count(*) FROM delivery_log"),
        "days": args.days,
        "fill_s": round(fill_s, 1),
        "index_build_s": round(index_s, 1),
        "bytes": await sizes(conn),
        "partitions": await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'delivery_log'::regclass"
        ),
        "dlq_rows": args.dlq_rows,
    }


async def listing_cases(conn: asyncpg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    """Each filter of `hub logs` / GET /logs, with values from the filled log."""
    day_start = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
    deep = await conn.fetchval(
        "SELECT max(id) FROM delivery_log WHERE created_at < $1",
        day_start - timedelta(days=min(25, args.days - 2)),
    )
    event = await conn.fetchval(
        "SELECT event_id FROM delivery_log WHERE created_at < $1 ORDER BY id DESC LIMIT 1",
        day_start - timedelta(days=10),
    )
    return {
        "none": {},
        "service": {"service": "svc-orders"},
        "service_rare": {"service": "svc-tiny"},
        "status_failed": {"status": "failed"},
        "status_unknown": {"status": "unknown"},
        "status_ok": {"status": "ok"},
        "direction_in": {"direction": "in"},
        "event_id": {"event_id": event},
        "event_id_missing": {"event_id": "no-such-event"},
        "since_1h": {"since": datetime.now(UTC) - timedelta(hours=1)},
        "before_id_deep": {"before_id": deep},
        "service_status_failed": {"service": "svc-orders", "status": "failed"},
        "service_rare_status_failed": {"service": "svc-tiny", "status": "failed"},
        "service_direction_in": {"service": "amqp-events", "direction": "in"},
        "service_before_id_deep": {"service": "svc-billing", "before_id": deep},
    }


async def explained(conn: asyncpg.Connection, filters: dict[str, Any]) -> dict[str, Any]:
    """One run of the listing under EXPLAIN ANALYZE: shared buffers touched (hit or read),
    and its planning and execution times (a custom plan: each call is planned)."""
    sql, values = listing(**filters, limit=50)
    text = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *values)
    [explained] = json.loads(text)
    plan = explained["Plan"]
    return {
        "buffers": int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"]),
        "planning_ms": round(explained["Planning Time"], 3),
        "execution_ms": round(explained["Execution Time"], 3),
    }


async def timed(runs: int, call: Any) -> dict[str, float]:
    await call()  # warm
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return median_ms(samples)


async def listings(store: Store, conn: asyncpg.Connection, args: argparse.Namespace) -> Any:
    results = {}
    for name, filters in (await listing_cases(conn, args)).items():

        async def page(filters: dict[str, Any] = filters) -> None:
            await store.log.recent(**filters, limit=50)

        results[name] = await timed(args.runs, page) | await explained(conn, filters)
        say(f"listing {name}: {results[name]}")
    return results


async def scrape(store: Store, runs: int) -> dict[str, Any]:
    """The /metrics scrape: the in-process one of hub.runtime.metrics when it exists, else
    the gauge queries it runs against the database."""
    try:
        from hub.runtime.metrics import HubMetrics

        metrics = HubMetrics()

        async def call() -> None:
            await metrics.scrape(store)

        what = "HubMetrics.scrape (no Temporal runtime metrics)"
    except ImportError:

        async def call() -> None:
            await store.metrics.gauges()

        what = "store.metrics.gauges"
    return {"what": what} | await timed(runs, call)


async def retention(store: Store, conn: asyncpg.Connection, days: int) -> dict[str, Any]:
    """One upkeep run (as the prune activity does it) while a writer inserts every 5 ms."""
    rows_before = await conn.fetchval("SELECT count(*) FROM delivery_log")
    stop = asyncio.Event()
    latencies: list[float] = []

    async def writer() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await store.log.add(LogEntryIn(service="svc-orders", status=LogStatus.OK))
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.005)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.5)
    t0 = time.perf_counter()
    made, busy = await store.log.ensure_partitions()
    t1 = time.perf_counter()
    dropped, busy_drops = await store.log.drop_partitions(days)
    t2 = time.perf_counter()
    await asyncio.sleep(0.5)
    stop.set()
    await task
    rows_after = await conn.fetchval("SELECT count(*) FROM delivery_log")
    return {
        "retention_days": days,
        "ensure_s": round(t1 - t0, 3),
        "drop_s": round(t2 - t1, 3),
        "dropped": dropped,
        "made": made,
        "busy": busy + busy_drops,
        "rows_dropped": rows_before - rows_after + len(latencies),
        "inserts_during": len(latencies),
        "slowest_insert_ms": round(max(latencies) * 1000, 2),
    }


async def scale_phase(server: str, args: argparse.Namespace) -> dict[str, Any]:
    async with scratch_database(server) as dsn:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            out: dict[str, Any] = {"fill": await scale_fill(conn, args)}
            async with Store.open(dsn, max_size=args.concurrency + 2) as store:
                out["listings"] = await listings(store, conn, args)
                out["scrape"] = await scrape(store, args.runs * 3)
                say(f"scrape: {out['scrape']}")
                say("scale: attempt writes at this size")
                half = args.write_attempts // 2
                out["write"] = write_summary([await write_round(dsn, half, args.concurrency, "s")])
                say("scale: retention")
                out["retention"] = await retention(store, conn, args.retention)
                say(f"retention: {out['retention']}")
        finally:
            await conn.close()
        return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dlq-rows", type=int, default=200_000)
    parser.add_argument("--migration-rows", type=int, default=2_000_000)
    parser.add_argument("--write-attempts", type=int, default=20_000)
    parser.add_argument("--write-prefill", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["write", "migration", "scale"]
    )
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    result: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    server = await asyncpg.connect(args.dsn)
    try:
        result["postgres"] = await server.fetchval("SHOW server_version")
    finally:
        await server.close()
    phases = {"write": write_phase, "migration": migration_phase, "scale": scale_phase}
    for name, phase in phases.items():
        if name not in args.skip:
            t0 = time.perf_counter()
            result[name] = await phase(args.dsn, args)
            say(f"{name}: done in {time.perf_counter() - t0:.0f}s")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    asyncio.run(main())
