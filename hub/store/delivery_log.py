"""The delivery log: one row per attempt (outbound) or message (inbound)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.core.models import LogEntry, LogEntryIn

Connection = asyncpg.Connection | PoolConnectionProxy
"""A connection of its own or one lent by the pool (inside a transaction)."""

LOG_COLUMNS = ", ".join(LogEntryIn.model_fields)
LOG_ROW = "jsonb_populate_record(NULL::delivery_log, $1::jsonb)"
"""A LogEntryIn passed as one JSON parameter (``log_row``), read as a delivery_log record."""
INSERT_LOG = f"INSERT INTO delivery_log ({LOG_COLUMNS}) SELECT {LOG_COLUMNS} FROM {LOG_ROW}"
OUTCOME_COLUMNS = "status, status_code, latency_ms, error, response_excerpt, target"


def update_log(row_id: str) -> str:
    """SQL writing an attempt's outcome (``$1``, a LogEntryIn) over its in-flight row, whose
    id is the parameter ``row_id``."""
    return f"""UPDATE delivery_log SET ({OUTCOME_COLUMNS}) = (
                   SELECT {OUTCOME_COLUMNS} FROM {LOG_ROW})
               WHERE id = {row_id}"""


_NEXT_ATTEMPT = ", ".join(
    "GREATEST(COALESCE(r.attempt, 1), last.attempt + 1)" if column == "attempt" else f"r.{column}"
    for column in LogEntryIn.model_fields
)
CUT_OFF = (
    "no outcome recorded: the worker stopped or lost its database during this attempt, "
    "so the receiver may have got it"
)


def log_row(entry: LogEntryIn) -> str:
    """The value of ``$1`` in INSERT_LOG and LOG_ROW."""
    return entry.model_dump_json()


class LogStore:
    """Writes and reads the delivery log; retention prunes it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(self, entry: LogEntryIn, conn: Connection | None = None) -> None:
        """Write one row (on ``conn`` when it must share a transaction)."""
        await (conn or self._pool).execute(INSERT_LOG, log_row(entry))

    async def begin(self, entry: LogEntryIn) -> tuple[int, int]:
        """Record an attempt before it is made; return (row id, attempt number).

        The number is one past the delivery's last logged attempt in this workflow, at least
        ``entry.attempt``: a send cut off by a crash counts, and the attempt after it says so
        in X-Hub-Attempt. Rows still 'sending' from such a send become 'unknown'.
        """
        row = await self._pool.fetchrow(
            f"""WITH cut_off AS (
                    UPDATE delivery_log SET status = 'unknown', error = $2
                    WHERE delivery_id = $3 AND workflow_id = $4 AND direction = 'out'
                      AND status = 'sending'),
                last AS (
                    SELECT max(attempt) AS attempt FROM delivery_log
                    WHERE delivery_id = $3 AND workflow_id = $4 AND direction = 'out')
                INSERT INTO delivery_log ({LOG_COLUMNS})
                SELECT {_NEXT_ATTEMPT}
                FROM {LOG_ROW} AS r, last
                RETURNING id, attempt""",
            log_row(entry),
            CUT_OFF,
            entry.delivery_id,
            entry.workflow_id,
        )
        assert row is not None  # INSERT … SELECT from one row always returns one
        return int(row["id"]), int(row["attempt"])

    async def finish(self, log_id: int, entry: LogEntryIn, conn: Connection | None = None) -> None:
        """Write an attempt's outcome over the row ``begin`` made."""
        await (conn or self._pool).execute(update_log("$2"), log_row(entry), log_id)

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
        rows = await self._pool.fetch(
            """SELECT * FROM delivery_log
               WHERE ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR status = $2)
                 AND ($3::text IS NULL OR direction = $3)
                 AND ($4::text IS NULL OR event_id = $4)
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
                 AND ($6::bigint IS NULL OR id < $6)
               ORDER BY id DESC LIMIT $7""",
            service,
            status,
            direction,
            event_id,
            since,
            before_id,
            limit,
        )
        return [LogEntry.model_validate(dict(r)) for r in rows]

    async def last_network_error(self, delivery_id: str, workflow_id: str) -> str | None:
        """The newest error of an attempt that reached the network (it has a latency)."""
        error: str | None = await self._pool.fetchval(
            """SELECT error FROM delivery_log
               WHERE delivery_id = $1 AND workflow_id = $2 AND status = 'failed'
                 AND latency_ms IS NOT NULL
               ORDER BY id DESC LIMIT 1""",
            delivery_id,
            workflow_id,
        )
        return error

    async def prune(self, older_than_days: int) -> int:
        """Delete rows past the retention period; return how many."""
        status = await self._pool.execute(
            "DELETE FROM delivery_log WHERE created_at < now() - make_interval(days => $1)",
            older_than_days,
        )
        return int(status.split()[-1])
