"""The gauges Prometheus reads from the database at scrape time (hub.runtime.metrics).

Only small reads: the circuits and the unresolved DLQ counts (``dlq_depth``, kept by triggers:
see migration 005), one row per service each, whatever the size of the DLQ. Never the delivery
log, whose size grows with traffic: counts over it are counters kept by the processes instead.
"""

from dataclasses import dataclass

import asyncpg

from hub.core.models import CircuitState

CIRCUITS = """SELECT s.name AS service, c.state, c.failures
              FROM circuit_state c JOIN services s ON s.id = c.service_id"""
DLQ_DEPTH = "SELECT service, unresolved AS depth FROM dlq_depth"
GAUGE_QUERIES = (CIRCUITS, DLQ_DEPTH)
"""Every statement a scrape runs (tests EXPLAIN them)."""


@dataclass(frozen=True)
class CircuitGauge:
    """A service's circuit as the gauges show it."""

    service: str
    state: CircuitState
    failures: int


@dataclass(frozen=True)
class GaugeReading:
    """What one scrape read: DLQ depth by service (0 for a service with none), circuits."""

    dlq_depth: dict[str, int]
    circuits: list[CircuitGauge]


class MetricsStore:
    """The scrape's queries; two statements on one connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def gauges(self) -> GaugeReading:
        """The circuits of every service and the depth of every service's DLQ (a deleted
        service's unresolved rows included)."""
        async with self._pool.acquire() as conn:
            circuits = await conn.fetch(CIRCUITS)
            depths = await conn.fetch(DLQ_DEPTH)
        gauges = [
            CircuitGauge(r["service"], CircuitState(r["state"]), r["failures"]) for r in circuits
        ]
        depth = {c.service: 0 for c in gauges} | {r["service"]: r["depth"] for r in depths}
        return GaugeReading(dlq_depth=depth, circuits=gauges)
