"""Circuit state, one row per service: every transition is one statement, so concurrent
workers serialise on the row lock and re-check their conditions against the committed state.
"""

from __future__ import annotations

import asyncpg

from hub.core.models import Circuit, CircuitOutcome, CircuitReading, LogEntryIn
from hub.store.delivery_log import log_row, update_log
from hub.store.errors import NotFoundError


def _retry_in(cooldown: str) -> str:
    """SQL for the seconds a refused caller should wait.

    Open: until the cooldown has passed. Half-open: until the probe's slot expires, but no
    longer than one cooldown, since a probe usually answers long before its slot runs out.
    """
    return f"""
        (CASE state
            WHEN 'open' THEN GREATEST(0, EXTRACT(EPOCH FROM
                opened_at + make_interval(secs => {cooldown}) - now()))
            WHEN 'half_open' THEN LEAST({cooldown}, GREATEST(0, EXTRACT(EPOCH FROM
                probe_expires_at - now())))
            ELSE 0 END)::float8 AS retry_in"""


_READ = "state, failures, opened_at, probe_expires_at, throttled_until"


def _reading(changed: str, service: str) -> str:
    """SQL for a CTE ``reading``: the circuit as the CTE ``changed`` left it, or as it is
    when that changed no row (its flag column then false)."""
    return f"""reading AS (
                    SELECT * FROM {changed}
                    UNION ALL
                    SELECT {_READ}, false FROM circuit_state
                    WHERE service_id = {service} AND NOT EXISTS (SELECT 1 FROM {changed}))"""


THROTTLE_IN = "GREATEST(0, EXTRACT(EPOCH FROM throttled_until - now()))::float8 AS throttle_in"
"""SQL for the seconds a 429's Retry-After still holds the whole service (0 when none)."""


RECORD_ATTEMPT = f"""WITH log AS ({update_log("$7")}),
                updated AS (
                    UPDATE circuit_state SET
                        state = CASE
                            WHEN state = 'half_open' AND $2 THEN 'closed'
                            WHEN state = 'half_open' OR (failures + 1 >= $4 AND NOT $2)
                            THEN 'open'
                            ELSE state END,
                        failures = CASE
                            WHEN $2 THEN 0
                            WHEN state = 'closed' THEN failures + 1
                            ELSE failures END,
                        opened_at = CASE
                            WHEN NOT $2 AND (state = 'half_open' OR failures + 1 >= $4)
                            THEN now()
                            WHEN $2 THEN NULL
                            ELSE opened_at END,
                        probe_owner = CASE WHEN state = 'half_open' THEN NULL ELSE probe_owner END,
                        probe_expires_at = CASE
                            WHEN state = 'half_open' THEN NULL ELSE probe_expires_at END,
                        throttled_until = CASE WHEN $8::float8 IS NULL THEN throttled_until
                            ELSE GREATEST(throttled_until, now() + make_interval(secs => $8))
                            END,
                        updated_at = now()
                    WHERE service_id = $5
                      AND ((state = 'closed' AND (NOT $2 OR failures > 0))
                        OR (state = 'half_open' AND probe_owner = $3))
                    RETURNING {_READ}, true AS changed),
                {_reading("updated", "$5")}
                SELECT state, failures, opened_at, changed, {_retry_in("$6")}, {THROTTLE_IN}
                FROM reading"""
"""Write an attempt's outcome (``$1`` over the log row ``$7``) and feed the circuit; ``$8``
is a 429's Retry-After in seconds (or NULL). See CircuitStore.record_attempt."""


class CircuitStore:
    """The SQL of the circuit breaker (hub.runtime.breaker decides when to call it)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def admit(
        self, service_id: int, *, cooldown: float, probe_ttl: float, owner: str
    ) -> tuple[CircuitReading, float] | None:
        """Grant the half-open probe to owner if the circuit may send one; else read it.

        Also the seconds the service stays throttled; a throttled service grants no probe.
        """
        row = await self._pool.fetchrow(
            f"""WITH claim AS (
                    UPDATE circuit_state
                    SET state = 'half_open', probe_owner = $4,
                        probe_expires_at = now() + make_interval(secs => $3), updated_at = now()
                    WHERE service_id = $1
                      AND ((state = 'open' AND opened_at + make_interval(secs => $2) <= now())
                        OR (state = 'half_open' AND probe_expires_at <= now()))
                      AND (throttled_until IS NULL OR throttled_until <= now())
                    RETURNING {_READ}, true AS probe),
                {_reading("claim", "$1")}
                SELECT state, failures, opened_at, probe, {_retry_in("$2")}, {THROTTLE_IN}
                FROM reading""",
            service_id,
            cooldown,
            probe_ttl,
            owner,
        )
        return (CircuitReading.model_validate(dict(row)), row["throttle_in"]) if row else None

    async def record_attempt(
        self,
        log_id: int,
        log: LogEntryIn,
        *,
        service_id: int,
        healthy: bool,
        probe_owner: str | None,
        threshold: int,
        cooldown: float,
        throttle: float | None = None,
    ) -> tuple[CircuitOutcome, float] | None:
        """Write an attempt's outcome over its log row and feed the circuit, in one round trip.

        closed: a failure counts, the threshold-th opens; a success resets the count.
        half_open: only the probe's outcome counts: success closes, failure re-opens.
        open: nothing changes (late results of calls made before it opened).
        ``changed`` says whether this statement updated the row (the breaker counts
        transitions by it). ``throttle`` (a 429's Retry-After, seconds) holds the whole
        service at least that long, set by this same statement; the seconds it still holds
        are returned with the outcome. A late 429 under an open circuit sets none: the
        circuit already holds the service.
        """
        row = await self._pool.fetchrow(
            RECORD_ATTEMPT,
            log_row(log),
            healthy,
            probe_owner,
            threshold,
            service_id,
            cooldown,
            log_id,
            throttle,
        )
        return (CircuitOutcome.model_validate(dict(row)), row["throttle_in"]) if row else None

    async def reserve(self, service_id: int, interval: float) -> float:
        """Take the service's next delivery slot under a rate of one per ``interval``
        seconds; return the seconds until it (0: go now).

        GCRA with a burst of 1 (no tolerance): ``rate_tat`` is when the next slot is free;
        a caller takes max(rate_tat, now()) and moves it on by ``interval``, so callers on
        every worker line up on the row lock, one slot each, in one statement.
        """
        wait = await self._pool.fetchval(
            """UPDATE circuit_state
               SET rate_tat = GREATEST(rate_tat, now()) + make_interval(secs => $2)
               WHERE service_id = $1
               RETURNING (EXTRACT(EPOCH FROM rate_tat - now()) - $2)::float8""",
            service_id,
            interval,
        )
        return max(0.0, float(wait or 0.0))

    async def all(self) -> list[Circuit]:
        rows = await self._pool.fetch(
            f"""SELECT s.name AS service, s.cb_threshold AS threshold, s.cb_cooldown AS cooldown,
                      c.state, c.failures, c.opened_at,
                      {_retry_in("s.cb_cooldown")}
               FROM circuit_state c JOIN services s ON s.id = c.service_id
               ORDER BY s.name"""
        )
        return [Circuit.model_validate(dict(r)) for r in rows]

    async def reset(self, name: str | None = None) -> int:
        """Close one service's circuit (or all, with no name); return how many were reset."""
        status = await self._pool.execute(
            """UPDATE circuit_state c
               SET state = 'closed', failures = 0, opened_at = NULL, probe_owner = NULL,
                   probe_expires_at = NULL, throttled_until = NULL, updated_at = now()
               FROM services s
               WHERE s.id = c.service_id AND ($1::text IS NULL OR s.name = $1)""",
            name,
        )
        count = int(status.split()[-1])
        if name is not None and count == 0:
            raise NotFoundError(f"no service named {name!r}")
        return count
