"""The delivery log: one row per attempt (outbound) or message (inbound).

The table is partitioned by UTC day (migration 004): retention drops whole days, and every
lookup here is bounded in time where it can be, so PostgreSQL reads only the partitions
that can hold its rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.core.models import Direction, LogEntry, LogEntryIn, LogStatus

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one lent by the pool (inside a transaction)."""

LOG_COLUMNS = ", ".join(LogEntryIn.model_fields)
LOG_ROW = "jsonb_populate_record(NULL::delivery_log, $1::jsonb)"
"""A LogEntryIn passed as one JSON parameter (``log_row``), read as a delivery_log record."""
INSERT_LOG = f"INSERT INTO delivery_log ({LOG_COLUMNS}) SELECT {LOG_COLUMNS} FROM {LOG_ROW}"
OUTCOME_COLUMNS = "status, status_code, latency_ms, error, response_excerpt, target"

PARTITIONS_AHEAD: Final = 7
"""Days of partitions kept made ahead of today (UTC)."""
LOCK_TIMEOUT: Final = "2s"
"""How long partition upkeep waits for a lock: inserts queue behind a waiting DROP."""
_PARTITION_NAME: Final = r"^delivery_log_p[0-9]{8}$"

# The attempt bookkeeping bounds its rows' created_at relative to now(), which is known only
# when a statement runs: its plan is then the same for every call, and PostgreSQL keeps one
# generic plan that prunes partitions as it starts. A timestamp parameter would let it prune
# while planning, so it would plan every call afresh: with a week of partitions that made
# begin four times slower (2.7 ms against 0.6 ms, bench/log_scale.py).
RECENT_ROW: Final = "created_at BETWEEN now() - interval '1 day' AND now() + interval '1 day'"
"""Where an attempt's row is when its outcome is written by the activity that began it (an
activity lasts minutes at most): the update then reads two or three partitions."""
CLOCK_SKEW: Final = timedelta(days=1)
"""Margin between a workflow's start (Temporal's clock) and its first row (the database's)."""
SINCE: Final = "created_at BETWEEN now() - {}::interval AND now() + interval '1 day'"
"""A workflow's rows: no older than its age (a parameter, ``max_age``), nor in the
partitions made ahead."""
EVERY_DAY: Final = timedelta(days=36500)
"""The age bound when the workflow's start is not known: every partition."""


def update_log(row_id: str, *, recent: bool = True) -> str:
    """SQL writing an attempt's outcome (``$1``, a LogEntryIn) over its in-flight row, whose
    id is the parameter ``row_id``; ``recent``: the row is at most a day old."""
    return f"""UPDATE delivery_log SET ({OUTCOME_COLUMNS}) = (
                   SELECT {OUTCOME_COLUMNS} FROM {LOG_ROW})
               WHERE id = {row_id}{f" AND {RECENT_ROW}" if recent else ""}"""


_NEXT_ATTEMPT = ", ".join(
    "GREATEST(COALESCE(r.attempt, 1), last.attempt + 1)" if column == "attempt" else f"r.{column}"
    for column in LogEntryIn.model_fields
)
CUT_OFF = (
    "no outcome recorded: the worker stopped or lost its database during this attempt, "
    "so the receiver may have got it"
)
BEGIN_ATTEMPT: Final = f"""
        WITH cut_off AS (
            UPDATE delivery_log SET status = 'unknown', error = $2
            WHERE delivery_id = $3 AND workflow_id = $4 AND direction = 'out'
              AND status = 'sending' AND {SINCE.format("$5")}),
        last AS (
            SELECT max(attempt) AS attempt FROM delivery_log
            WHERE delivery_id = $3 AND workflow_id = $4 AND direction = 'out'
              AND {SINCE.format("$5")})
        INSERT INTO delivery_log ({LOG_COLUMNS})
        SELECT {_NEXT_ATTEMPT}
        FROM {LOG_ROW} AS r, last
        RETURNING id, attempt"""
"""LogStore.begin: ``$1`` the row, ``$2`` CUT_OFF, ``$3`` delivery id, ``$4`` workflow id,
``$5`` how far back the workflow's rows may be (``max_age``)."""


def max_age(workflow_started: datetime | None) -> timedelta:
    """How old a workflow's log rows can be: since its start, plus CLOCK_SKEW."""
    if workflow_started is None:
        return EVERY_DAY
    return datetime.now(UTC) - workflow_started + CLOCK_SKEW


def log_row(entry: LogEntryIn) -> str:
    """The value of ``$1`` in INSERT_LOG and LOG_ROW."""
    return entry.model_dump_json()


async def ensure_partitions(
    conn: Connection, ahead: int = PARTITIONS_AHEAD
) -> tuple[list[str], list[str]]:
    """Make the partitions of today and the next ``ahead`` days, and of any day with rows
    waiting in the default partition (they move in); return (made, busy): busy ones stayed
    locked past LOCK_TIMEOUT and are made by the next run."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        rows = await conn.fetch("SELECT * FROM delivery_log_ensure_partitions($1)", ahead)
    made = [str(r["partition_name"]) for r in rows if r["made"]]
    return made, [str(r["partition_name"]) for r in rows if not r["made"]]


def listing(
    *,
    service: str | None = None,
    status: str | None = None,
    direction: str | None = None,
    event_id: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[str, list[object]]:
    """The SQL and arguments of one page of the log, newest first (LogStore.recent).

    Only the filters given are in the SQL, status and direction as literals (checked against
    their enums): each combination gets a plan of its own, and the planner can use the
    partial indexes of migration 004, which it could not for a parameter.
    """
    where, args = ["true"], list[object]()
    for condition, value in (
        ("service = $", service),
        ("event_id = $", event_id),
        ("created_at >= $", since),
        ("id < $", before_id),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{condition}{len(args)}")
    if status is not None:
        where.append(f"status = '{LogStatus(status).value}'")
    if direction is not None:
        where.append(f"direction = '{Direction(direction).value}'")
    args.append(limit)
    sql = f"""SELECT * FROM delivery_log WHERE {" AND ".join(where)}
              ORDER BY id DESC LIMIT ${len(args)}"""
    return sql, args


class LogStore:
    """Writes and reads the delivery log; retention drops its old partitions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, entry: LogEntryIn, conn: Connection | None = None) -> None:
        """Write one row (on ``conn`` when it must share a transaction)."""
        await (conn or self._pool).execute(INSERT_LOG, log_row(entry))

    async def begin(
        self, entry: LogEntryIn, *, workflow_started: datetime | None = None
    ) -> tuple[int, int]:
        """Record an attempt before it is made; return (row id, attempt number).

        The number is one past the delivery's last logged attempt in this workflow, at least
        ``entry.attempt``: a send cut off by a crash counts, and the attempt after it says so
        in X-Hub-Attempt. Rows still 'sending' from such a send become 'unknown'. Given the
        workflow's start, only the partitions since then are read.
        """
        row = await self._pool.fetchrow(
            BEGIN_ATTEMPT,
            log_row(entry),
            CUT_OFF,
            entry.delivery_id,
            entry.workflow_id,
            max_age(workflow_started),
        )
        assert row is not None  # INSERT … SELECT from one row always returns one
        return int(row["id"]), int(row["attempt"])

    async def finish(self, log_id: int, entry: LogEntryIn, conn: Connection | None = None) -> None:
        """Write an attempt's outcome over the row ``begin`` made: first in the recent
        partitions, then (an outcome written long after, by the workflow) in all of them."""
        on = conn or self._pool
        status = await on.execute(update_log("$2"), log_row(entry), log_id)
        if status == "UPDATE 0":
            await on.execute(update_log("$2", recent=False), log_row(entry), log_id)

    async def add_inbound(self, entry: LogEntryIn) -> None:
        """Log an inbound message, correlated to the outbound delivery its delivery_id names."""
        await self._pool.execute(
            f"""INSERT INTO delivery_log ({LOG_COLUMNS})
               SELECT l.direction, l.service, COALESCE(l.rule_id, o.rule_id),
                      COALESCE(l.event_id, o.event_id), COALESCE(l.event_name, o.event_name),
                      l.delivery_id, COALESCE(l.workflow_id, o.workflow_id), l.method, l.target,
                      l.status, l.status_code, l.latency_ms, l.attempt, l.error,
                      l.response_excerpt
               FROM {LOG_ROW} AS l
               LEFT JOIN LATERAL (
                   SELECT rule_id, event_id, event_name, workflow_id FROM delivery_log
                   WHERE delivery_id = l.delivery_id AND direction = 'out'
                   ORDER BY id DESC LIMIT 1) AS o ON true""",
            log_row(entry),
        )

    async def recent(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        direction: str | None = None,
        event_id: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[LogEntry]:
        """Newest first; pass the last id seen as ``before_id`` for the next page."""
        sql, args = listing(
            service=service,
            status=status,
            direction=direction,
            event_id=event_id,
            since=since,
            before_id=before_id,
            limit=limit,
        )
        rows = await self._pool.fetch(sql, *args)
        return [LogEntry.model_validate(dict(r)) for r in rows]

    async def last_network_error(
        self, delivery_id: str, workflow_id: str, *, workflow_started: datetime | None = None
    ) -> str | None:
        """The newest error of an attempt that reached the network (it has a latency)."""
        error: str | None = await self._pool.fetchval(
            f"""SELECT error FROM delivery_log
               WHERE delivery_id = $1 AND workflow_id = $2 AND status = 'failed'
                 AND latency_ms IS NOT NULL AND {SINCE.format("$3")}
               ORDER BY id DESC LIMIT 1""",
            delivery_id,
            workflow_id,
            max_age(workflow_started),
        )
        return error

    async def ensure_partitions(self, ahead: int = PARTITIONS_AHEAD) -> tuple[list[str], list[str]]:
        """See the module's ensure_partitions: (made, busy)."""
        async with self._pool.acquire() as conn:
            return await ensure_partitions(conn, ahead)

    async def drop_partitions(self, older_than_days: int) -> tuple[list[str], list[str]]:
        """Drop every day partition whose rows are all past the retention; return (dropped,
        busy). The log keeps between ``older_than_days`` and one day more.

        A DROP locks the whole log, so each one waits at most LOCK_TIMEOUT for running
        queries (inserts queue behind it meanwhile); a busy one goes at the next run.
        """
        names = await self._pool.fetch(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'delivery_log'::regclass AND c.relname ~ $2
                 AND to_date(substr(c.relname, 15), 'YYYYMMDD') + 1
                     <= (now() - make_interval(days => $1)) AT TIME ZONE 'UTC'
               ORDER BY c.relname""",
            older_than_days,
            _PARTITION_NAME,
        )
        dropped, busy = [], []
        for row in names:
            name = str(row["relname"])
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    await conn.execute(f'DROP TABLE "{name}"')
                dropped.append(name)
            except asyncpg.LockNotAvailableError:
                busy.append(name)
        return dropped, busy
