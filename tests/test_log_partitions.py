"""The delivery log partitioned by day (migration 004): the migration keeps every row, rows
waiting in the default partition move into their day, retention drops whole old days, every
listing filter is served by an index, and the attempt bookkeeping reads only recent days.

Each test has a database of its own, built by the migrations (001-003 first where the test
is about what 004 does to an existing log).
"""

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

import hub.store.delivery_log as delivery_log
from hub.config import Settings
from hub.core.models import LogEntryIn, LogStatus
from hub.store import Store, migrate
from hub.store.delivery_log import (
    BEGIN_ATTEMPT,
    CUT_OFF,
    listing,
    log_row,
    max_age,
    update_log,
)
from tests.cli_runner import assert_one_line_error, run_hub

# Rows every day, made by generate_series: statuses, directions and services in proportions
# like a real log's (most rows are outbound and ok).
FILL = """
    INSERT INTO delivery_log (created_at, direction, service, event_id, delivery_id,
                              workflow_id, status, attempt, latency_ms, error)
    SELECT $1::timestamptz + (g * interval '1 day' / $2),
           CASE WHEN g % 20 = 0 THEN 'in' ELSE 'out' END,
           CASE WHEN g % 997 = 0 THEN 'rare' ELSE 'svc-' || (g % 7) END,
           'ev-' || $3 || '-' || g,
           'ev-' || $3 || '-' || g || ':1',
           'event-ev-' || $3 || '-' || g,
           CASE WHEN g % 25 = 1 THEN 'failed' WHEN g % 500 = 3 THEN 'unknown' ELSE 'ok' END,
           1, 12.5,
           CASE WHEN g % 25 = 1 THEN 'HTTP 503' END
    FROM generate_series(0, $2 - 1) AS g"""


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def part(day: date) -> str:
    return f"delivery_log_p{day:%Y%m%d}"


@pytest.fixture
async def database(fresh_database) -> Callable[..., Any]:
    """``await database(until=None)``: a new database, migrated (up to ``until``)."""

    async def make(until: int | None = None) -> str:
        dsn = await fresh_database(f"logpart_{secrets.token_hex(4)}")
        await migrate(dsn, until=until)
        return dsn

    return make


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str], Any]]:
    conns: list[asyncpg.Connection] = []

    async def open_(dsn: str) -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn)
        conns.append(conn)
        return conn

    yield open_
    for conn in conns:
        await conn.close()


async def partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'delivery_log'::regclass"""
    )
    return {r["relname"] for r in rows}


async def test_the_migration_keeps_every_row_and_id_in_its_utc_day(database, connect):
    dsn = await database(until=3)
    conn = await connect(dsn)
    # Local days differ from UTC days here: a partition chosen by local time would be wrong.
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Pacific/Kiritimati'")
    now = datetime.now(UTC)
    midnight = datetime.combine(utc_day(now), datetime.min.time(), UTC)
    moments = [now - timedelta(days=d, hours=h) for d in range(0, 9) for h in (0, 5, 13)]
    moments += [midnight - timedelta(days=3), midnight - timedelta(days=3, microseconds=1)]
    for i, moment in enumerate(moments):
        status = ["ok", "failed", "sending", "unknown"][i % 4]
        await conn.execute(
            """INSERT INTO delivery_log (created_at, direction, service, event_id, status,
                   attempt, error)
               VALUES ($1, $2, 'svc', $3, $4, $5, $6)""",
            moment,
            "in" if i % 5 == 0 else "out",
            f"ev-{i}",
            status,
            i,
            f"error {i}" if status == "failed" else None,
        )
    await conn.execute("DELETE FROM delivery_log WHERE event_id = 'ev-1'")  # a gap in the ids
    before = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM delivery_log")}
    last_id = await conn.fetchval("SELECT last_value FROM delivery_log_id_seq")

    assert await migrate(dsn, until=4) == ["004_partitioned_log.sql"]

    conn = await connect(dsn)
    after = {
        r["id"]: dict(r)
        for r in await conn.fetch("SELECT tableoid::regclass::text AS part, * FROM delivery_log")
    }
    assert {i: {k: v for k, v in r.items() if k != "part"} for i, r in after.items()} == before
    for row in after.values():
        assert row["part"] == part(utc_day(row["created_at"])), row
    assert (
        await conn.fetchval("SELECT relkind FROM pg_class WHERE relname = 'delivery_log'") == b"p"
    )
    assert await conn.fetchval("SELECT to_regclass('delivery_log_unpartitioned')") is None
    assert await conn.fetchval("SELECT count(*) FROM delivery_log_default") == 0
    today = utc_day(datetime.now(UTC))
    ahead = {part(today + timedelta(days=d)) for d in range(8)}
    assert ahead <= await partitions(conn)
    new_id = await conn.fetchval(
        "INSERT INTO delivery_log (direction, service, status) VALUES ('out', 'svc', 'ok') "
        "RETURNING id"
    )
    assert new_id == last_id + 1


async def test_rows_in_the_default_partition_move_into_their_day(database, connect):
    dsn = await database()
    conn = await connect(dsn)
    today = utc_day(datetime.now(UTC))
    soon, long_ago = today + timedelta(days=3), today - timedelta(days=100)
    await conn.execute(f"DROP TABLE {part(soon)}")  # as if upkeep had not run for days
    for day in (soon, long_ago):
        start = datetime.combine(day, datetime.min.time(), UTC)
        await conn.execute(FILL, start, 40, f"{day:%m%d}")
    waiting = {r["id"] for r in await conn.fetch("SELECT id FROM delivery_log_default")}
    assert len(waiting) == 80

    async with Store.open(dsn) as store:
        made, busy = await store.log.ensure_partitions()
    assert (sorted(made), busy) == ([part(long_ago), part(soon)], [])
    assert await conn.fetchval("SELECT count(*) FROM delivery_log_default") == 0
    rows = await conn.fetch(
        "SELECT id, created_at, tableoid::regclass::text AS p FROM delivery_log"
    )
    assert {r["id"] for r in rows} == waiting
    assert all(r["p"] == part(utc_day(r["created_at"])) for r in rows)
    # The moved rows carry the partition's indexes like any other.
    [row] = await store_listing(dsn, event_id=f"ev-{long_ago:%m%d}-5")
    assert row["service"] == "svc-5"


async def store_listing(dsn: str, **filters: Any) -> list[asyncpg.Record]:
    sql, args = listing(**filters)
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_retention_drops_only_whole_days_past_it(database, connect):
    dsn = await database()
    conn = await connect(dsn)
    today = utc_day(datetime.now(UTC))
    for back in (29, 30, 31, 32):
        start = datetime.combine(today - timedelta(days=back), datetime.min.time(), UTC)
        await conn.execute(FILL, start, 48, str(back))
    async with Store.open(dsn) as store:
        await store.log.ensure_partitions()
        cutoff = await conn.fetchval("SELECT now() - interval '30 days'")
        younger = await conn.fetchval(
            "SELECT count(*) FROM delivery_log WHERE created_at >= $1", cutoff
        )
        dropped, busy = await store.log.drop_partitions(30)

    # Day 31 back ends exactly 30 days ago at midnight, so all its rows are past 30 days;
    # day 30 back still has rows younger than that: it stays, whole.
    assert (sorted(dropped), busy) == (
        sorted(part(today - timedelta(days=b)) for b in (31, 32)),
        [],
    )
    assert not set(dropped) & await partitions(conn)
    assert (
        await conn.fetchval("SELECT count(*) FROM delivery_log WHERE created_at >= $1", cutoff)
        == younger
    )
    oldest = await conn.fetchval("SELECT min(created_at) FROM delivery_log")
    assert utc_day(oldest) == today - timedelta(days=30)
    assert await conn.fetchval("SELECT count(*) FROM delivery_log") == 96


async def test_a_busy_log_makes_retention_wait_briefly_then_skip(database, connect, monkeypatch):
    monkeypatch.setattr(delivery_log, "LOCK_TIMEOUT", "300ms")
    dsn = await database()
    conn, reader = await connect(dsn), await connect(dsn)
    old = datetime.combine(
        utc_day(datetime.now(UTC)) - timedelta(days=40), datetime.min.time(), UTC
    )
    await conn.execute(FILL, old, 10, "old")
    async with Store.open(dsn) as store:
        await store.log.ensure_partitions()
        # A long report holds the log: DROP must not queue the writers behind it for long.
        tx = reader.transaction()
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM delivery_log")
        started = asyncio.get_running_loop().time()
        drop = asyncio.create_task(store.log.drop_partitions(30))
        await asyncio.sleep(0.1)
        await store.log.add(LogEntryIn(service="svc", status=LogStatus.OK))
        waited = asyncio.get_running_loop().time() - started
        dropped, busy = await drop
        await tx.rollback()
        assert (dropped, busy) == ([], [part(old.date())])
        assert waited < 2, "an insert waited on the DROP for longer than its lock_timeout"
        assert (await store.log.drop_partitions(30)) == ([part(old.date())], [])


# Every listing filter, and the indexes (on the parent: each partition's index inherits it)
# that may serve it. A filter on a common service may go by the service-less partial index
# (most rows it reads match); a rare one must use its service's.
PKEY, SERVICE, NOT_OK = "delivery_log_pkey", "delivery_log_service", "delivery_log_not_ok"
SERVICE_NOT_OK, INBOUND = "delivery_log_service_not_ok", "delivery_log_inbound"
SERVICE_INBOUND, EVENT = "delivery_log_service_inbound", "delivery_log_event_id"
LISTINGS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {PKEY}),
    ({"service": "svc-3"}, {SERVICE}),
    ({"service": "rare"}, {SERVICE}),
    ({"status": "failed"}, {NOT_OK}),
    ({"status": "unknown"}, {NOT_OK}),
    ({"status": "ok"}, {PKEY}),
    ({"direction": "in"}, {INBOUND}),
    ({"direction": "out"}, {PKEY}),
    ({"event_id": "ev-x-1234"}, {EVENT}),
    ({"before_id": 1000}, {PKEY}),
    ({"service": "svc-3", "status": "failed"}, {SERVICE_NOT_OK, NOT_OK}),
    ({"service": "rare", "status": "failed"}, {SERVICE_NOT_OK}),
    ({"service": "svc-3", "direction": "in"}, {SERVICE_INBOUND, INBOUND}),
    ({"service": "rare", "direction": "in"}, {SERVICE_INBOUND}),
    ({"service": "svc-3", "before_id": 1000}, {SERVICE, PKEY}),
    ({"status": "failed", "direction": "in"}, {NOT_OK, INBOUND}),
    ({"event_id": "ev-x-1234", "status": "ok"}, {EVENT}),
]


def scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a JSON plan that reads a table."""
    if "Relation Name" in plan:
        yield plan
    for child in plan.get("Plans", []):
        yield from scans(child)


def indexes(node: dict[str, Any]) -> set[str]:
    """The indexes a scan node reads: its own, or its bitmap's."""
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", []):
        found |= indexes(child)
    return found


@pytest.fixture
async def filled(database, connect) -> asyncpg.Connection:
    """A log of 8 days, 25,000 rows a day, analyzed."""
    conn = await connect(await database())
    today = utc_day(datetime.now(UTC))
    for back in range(8):
        day = today - timedelta(days=back)
        await conn.execute("SELECT delivery_log_add_partition($1)", day)
        start = datetime.combine(day, datetime.min.time(), UTC)
        await conn.execute(FILL, start, 25_000, "x" if back == 3 else str(back))
    await conn.execute("ANALYZE delivery_log")
    return conn


async def index_parents(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        """SELECT c.relname AS child, p.relname AS parent FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.relkind = 'I'"""
    )
    return {r["child"]: r["parent"] for r in rows}


async def explain(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    [plan] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
    return dict(plan["Plan"])


@pytest.mark.parametrize(("filters", "allowed"), LISTINGS, ids=str)
async def test_every_listing_filter_is_served_by_an_index(filled, filters, allowed):
    parents = await index_parents(filled)
    rows = await filled.fetch(
        "SELECT relname FROM pg_class WHERE relname LIKE 'delivery_log_p%' AND reltuples > 0"
    )
    filled_parts = {r["relname"] for r in rows}
    sql, args = listing(**filters, limit=50)
    plan = await explain(filled, sql, *args)
    used = [n for n in scans(plan) if n["Relation Name"] in filled_parts]
    assert used, plan
    kinds = {n["Node Type"] for n in used}
    assert kinds <= {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, (filters, kinds)
    assert {parents[i] for n in used for i in indexes(n)} <= allowed, plan


async def test_since_reads_only_the_days_since(filled):
    since = datetime.now(UTC) - timedelta(days=2)
    sql, args = listing(since=since, status="failed", limit=50)
    plan = await explain(filled, sql, *args)
    read = {n["Relation Name"] for n in scans(plan) if "Relation Name" in n}
    assert part(utc_day(since) - timedelta(days=1)) not in read
    assert part(utc_day(since)) in read


async def test_the_attempt_bookkeeping_reads_only_the_workflows_days(filled):
    """begin (with the workflow's start) and the outcome update must not read every day,
    whether PostgreSQL plans them for each call or once (its generic plan)."""
    entry = LogEntryIn(service="s", delivery_id="d:1", workflow_id="w", status=LogStatus.SENDING)
    age = max_age(datetime.now(UTC) - timedelta(minutes=5))
    today = utc_day(datetime.now(UTC))
    near = {part(today + timedelta(days=d)) for d in (-2, -1, 0, 1)}
    for mode in ("force_custom_plan", "force_generic_plan"):
        await filled.execute(f"SET plan_cache_mode = {mode}")
        begin = await explain_run(filled, BEGIN_ATTEMPT, log_row(entry), CUT_OFF, "d:1", "w", age)
        outcome = await explain_run(filled, update_log("$2"), log_row(entry), 1)
        assert begin and begin <= near, (mode, begin)
        assert outcome and outcome <= near, (mode, outcome)
    # Without the start it still works, reading every day.
    every = await explain_run(
        filled, BEGIN_ATTEMPT, log_row(entry), CUT_OFF, "d:1", "w", max_age(None)
    )
    assert part(today - timedelta(days=7)) in every


async def test_the_attempt_bookkeeping_is_planned_once(database):
    """A custom plan of begin plans every partition at each call (four times the cost of
    the attempt's writes): its statement must get PostgreSQL's generic plan."""
    async with Store.open(await database(), max_size=1) as store:
        started = datetime.now(UTC)
        for n in range(12):
            entry = LogEntryIn(
                service="s", delivery_id=f"d:{n}", workflow_id="w", status=LogStatus.SENDING
            )
            log_id, _ = await store.log.begin(entry, workflow_started=started)
            entry.status = LogStatus.OK
            await store.log.finish(log_id, entry)
        plans = await store.pool.fetch(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        )
    for sql in (BEGIN_ATTEMPT, update_log("$2")):
        [row] = [r for r in plans if r["statement"] == sql]
        assert row["generic_plans"] >= 6, dict(row)


async def explain_run(conn: asyncpg.Connection, sql: str, *args: Any) -> set[str]:
    """The partitions a statement reads after run-time pruning (it runs in a transaction
    that is rolled back)."""
    tx = conn.transaction()
    await tx.start()
    try:
        text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
    finally:
        await tx.rollback()
    [plan] = json.loads(text)
    return {
        n["Relation Name"]
        for n in scans(plan["Plan"])
        if n.get("Relation Name", "delivery_log") != "delivery_log"
        and n["Node Type"] != "ModifyTable"
    }


@pytest.mark.parametrize(
    ("env", "days"),
    [
        ({}, 30),
        ({"HUB_LOG_RETENTION": "45"}, 45),
        ({"HUB_LOG_RETENTION": "7d"}, 7),
        ({"HUB_LOG_RETENTION": "720h"}, 30),
        ({"HUB_LOG_RETENTION": "721h"}, 31),
        ({"HUB_LOG_RETENTION": "90m"}, 1),
        ({"HUB_LOG_RETENTION_DAYS": "12"}, 12),
        ({"HUB_LOG_RETENTION_DAYS": "12", "HUB_LOG_RETENTION": "3d"}, 3),
    ],
)
def test_retention_setting_in_days(monkeypatch, env, days):
    for name in ("HUB_LOG_RETENTION", "HUB_LOG_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().log_retention == days


@pytest.mark.parametrize("value", ["soon", "0", "-3d", "30 days", "1.5d", ""])
def test_a_bad_retention_is_refused(monkeypatch, value):
    monkeypatch.setenv("HUB_LOG_RETENTION", value)
    with pytest.raises(ValidationError, match="HUB_LOG_RETENTION must be"):
        Settings()


async def test_a_bad_retention_stops_the_worker_with_one_line():
    env = os.environ | {"HUB_LOG_RETENTION": "a month"}
    run = await run_hub(env, "worker")
    assert_one_line_error(run, "HUB_LOG_RETENTION", "'a month'", "720h")
