"""What the console's overview reads: the last hour of the delivery log, minute by minute and
service by service, and the DLQ's depth.

Every read of the log is bounded by ``created_at`` relative to ``now()`` (as in
``hub.store.delivery_log``): the plan is generic, and PostgreSQL prunes the day partitions as
the statement starts, so only today's (and at midnight yesterday's) are read. The DLQ depth
comes from ``dlq_depth`` (kept by triggers, one row per service), never from counting the DLQ.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

WINDOW_MINUTES: Final = 60
"""The overview's window: the last hour, minute by minute (the current minute included)."""

_FIRST_MINUTE: Final = f"date_trunc('minute', now()) - interval '{WINDOW_MINUTES - 1} minutes'"
LAST_HOUR: Final = f"created_at >= {_FIRST_MINUTE} AND created_at < now() + interval '1 minute'"
"""The log rows of the window (a minute ahead for clock skew between writers)."""

PER_MINUTE: Final = f"""
    WITH minutes AS (
        SELECT generate_series({_FIRST_MINUTE}, date_trunc('minute', now()),
                               interval '1 minute') AS minute
    ), counted AS (
        SELECT date_trunc('minute', created_at) AS minute,
               count(DISTINCT event_id) FILTER (WHERE attempt = 1) AS events,
               count(*) FILTER (WHERE status = 'ok') AS ok,
               count(*) FILTER (WHERE status = 'failed') AS failed
        FROM delivery_log
        WHERE direction = 'out' AND {LAST_HOUR}
        GROUP BY 1
    )
    SELECT m.minute, coalesce(c.events, 0) AS events, coalesce(c.ok, 0) AS ok,
           coalesce(c.failed, 0) AS failed
    FROM minutes m LEFT JOIN counted c USING (minute)
    ORDER BY m.minute"""

LATENCY: Final = f"""
    SELECT service, count(*) AS attempts,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
    FROM delivery_log
    WHERE direction = 'out' AND status IN ('ok', 'failed') AND latency_ms IS NOT NULL
      AND {LAST_HOUR}
    GROUP BY service
    ORDER BY service"""

DLQ_DEPTH: Final = """
    SELECT service, unresolved FROM dlq_depth WHERE unresolved > 0
    ORDER BY unresolved DESC, service"""

ACTIVITY_QUERIES: Final = (PER_MINUTE, LATENCY, DLQ_DEPTH)
"""Every statement the overview runs (tests EXPLAIN them)."""


@dataclass(frozen=True)
class MinuteCounts:
    """One minute of outbound traffic: events first tried, attempts that succeeded, failed."""

    minute: datetime
    events: int
    ok: int
    failed: int


@dataclass(frozen=True)
class ServiceLatency:
    """A service's attempts over the window and their latency percentiles (milliseconds)."""

    service: str
    attempts: int
    failed: int
    p50: float
    p99: float


@dataclass(frozen=True)
class DlqDepth:
    """Unresolved DLQ rows of one service."""

    service: str
    unresolved: int


class ActivityStore:
    """The overview's reads: small results whatever the size of the log or the DLQ."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def per_minute(self) -> list[MinuteCounts]:
        """The last hour, one entry per minute, oldest first (zeros included)."""
        rows = await self._pool.fetch(PER_MINUTE)
        return [MinuteCounts(r["minute"], r["events"], r["ok"], r["failed"]) for r in rows]

    async def latency(self) -> list[ServiceLatency]:
        """p50/p99 latency of each service's attempts in the last hour, by name."""
        rows = await self._pool.fetch(LATENCY)
        return [
            ServiceLatency(r["service"], r["attempts"], r["failed"], r["p50"], r["p99"])
            for r in rows
        ]

    async def dlq_depth(self) -> list[DlqDepth]:
        """Services with unresolved DLQ rows, deepest first."""
        rows = await self._pool.fetch(DLQ_DEPTH)
        return [DlqDepth(r["service"], r["unresolved"]) for r in rows]
