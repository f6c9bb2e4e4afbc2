"""Aggregates behind the API's Prometheus metrics, read from the log, the DLQ and circuits."""

from dataclasses import dataclass
from typing import Any

import asyncpg

from hub.core.models import Circuit
from hub.store.circuits import CircuitStore


@dataclass(frozen=True)
class StoreMetrics:
    """Counts behind the Prometheus metrics (see hub.api.metrics)."""

    attempts: list[dict[str, Any]]  # service, direction, status, n, latency_sum
    latency_buckets: list[dict[str, Any]]  # service, le, n (cumulative, outbound attempts)
    dlq_depth: dict[str, int]  # unresolved rows
    dead_lettered: dict[str, int]  # every row, resolved by a replay or not
    circuits: list[Circuit]


class MetricsStore:
    """Scans what the retention keeps; one call per scrape."""

    def __init__(self, pool: asyncpg.Pool, circuits: CircuitStore) -> None:
        self._pool = pool
        self._circuits = circuits

    async def read(self, latency_buckets_ms: list[float]) -> StoreMetrics:
        """Aggregates for /metrics, over what the log retention keeps."""
        async with self._pool.acquire() as conn:
            attempts = await conn.fetch(
                """SELECT service, direction, status, count(*) AS n,
                          coalesce(sum(latency_ms), 0) AS latency_sum
                   FROM delivery_log GROUP BY service, direction, status"""
            )
            buckets = await conn.fetch(
                """SELECT s.service, b.le, count(l.id) AS n
                   FROM unnest($1::float8[]) AS b(le)
                   CROSS JOIN (SELECT DISTINCT service FROM delivery_log
                               WHERE direction = 'out') AS s
                   LEFT JOIN delivery_log l ON l.service = s.service AND l.direction = 'out'
                        AND l.latency_ms IS NOT NULL AND l.latency_ms <= b.le
                   GROUP BY s.service, b.le ORDER BY s.service, b.le""",
                latency_buckets_ms,
            )
            dlq = await conn.fetch(
                """SELECT service, count(*) FILTER (WHERE resolved_at IS NULL) AS depth,
                          count(*) AS total
                   FROM dlq GROUP BY service"""
            )
        return StoreMetrics(
            attempts=[dict(r) for r in attempts],
            latency_buckets=[dict(r) for r in buckets],
            dlq_depth={r["service"]: r["depth"] for r in dlq},
            dead_lettered={r["service"]: r["total"] for r in dlq},
            circuits=await self._circuits.all(),
        )
