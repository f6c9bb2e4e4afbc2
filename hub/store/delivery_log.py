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
