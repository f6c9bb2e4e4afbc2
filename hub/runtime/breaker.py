"""One circuit breaker per service, its state in PostgreSQL so every worker shares it.

closed -> open after ``cb_threshold`` consecutive failures; open refuses without network I/O
until ``cb_cooldown`` has passed; then half-open grants exactly one probe (a slot that expires
after the service timeout plus a margin, so a dead worker cannot wedge it); the probe's
success closes the circuit, its failure re-opens it and restarts the cooldown.

Cost on the hot path: outcomes ride on the statement that writes the attempt's log row, and
every statement returns the circuit's new state, which this worker then trusts for
``cache_seconds`` (default 1 s). A delivery to a healthy service therefore usually costs no
extra round trip; at most one check per service per ``cache_seconds`` goes to the database.
The price is that another worker's opening of a circuit can take up to ``cache_seconds`` to
be noticed here. Only grants come from the cache: a refusal (which holds the delivery) is
always read from the row, so a manual reset or a closing probe is seen at once.

The same row paces the service: a 429's Retry-After, written by the statement that records
that attempt, throttles the whole service (ThrottledError) until it passes; a cached reading
with a throttle grants nothing, so the next call reads the row.

Transitions are counted (hub_circuit_transitions_total) by the worker whose statement made
them: a granted probe enters half_open, and a recorded outcome that changed the row and left
it open, or closed it after the probe, enters that state. A worker that merely reads a circuit
another one opened counts nothing, so a burst of failures opening it counts once.
"""

import time
import uuid
from dataclasses import dataclass

from hub.core.models import CircuitOutcome, CircuitReading, CircuitState, LogEntryIn, Service
from hub.runtime.metrics import HubMetrics
from hub.store import Store

PROBE_MARGIN = 10.0
# The error type of an attempt the circuit refused, as Temporal records it.
CIRCUIT_OPEN = "CircuitOpen"


class CircuitOpenError(Exception):
    """The circuit refused the call; retry after ``retry_in`` seconds."""

    def __init__(self, service: str, state: CircuitState, retry_in: float) -> None:
        super().__init__(f"circuit {state.value} for service {service!r}: retry in {retry_in:.1f}s")
        self.service = service
        self.state = state
        self.retry_in = retry_in


class ThrottledError(Exception):
    """The service answered 429 with Retry-After: no call to it for ``retry_in`` seconds."""

    def __init__(self, service: str, retry_in: float) -> None:
        super().__init__(f"service {service!r} asked to slow down: retry in {retry_in:.1f}s")
        self.service = service
        self.retry_in = retry_in


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; ``probe_owner`` is set when the call is the half-open probe."""

    service_id: int
    probe_owner: str | None = None


@dataclass(frozen=True)
class _Cached:
    reading: CircuitReading
    at: float
    throttle_in: float = 0.0


class CircuitBreaker:
    """Transport-neutral: ask ``admit`` before a call, ``record`` its outcome after it."""

    def __init__(
        self,
        store: Store,
        *,
        cache_seconds: float = 1.0,
        probe_margin: float = PROBE_MARGIN,
        metrics: HubMetrics | None = None,
    ) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._probe_margin = probe_margin
        self._cache: dict[int, _Cached] = {}
        self._metrics = metrics or HubMetrics()

    async def admit(self, service: Service) -> Permit:
        """A permit for one call, or CircuitOpenError (ThrottledError while a 429's
        Retry-After lasts) without any I/O towards the service.

        Only a grant is served from the cache: a refusal is always read from the row, so a
        reset (or another worker's probe closing the circuit) is seen at once, and a
        delivery is never held for a state that has already ended.
        """
        cached = self._cache.get(service.id)
        if (
            cached is not None
            and time.monotonic() - cached.at < self._cache_seconds
            and cached.reading.state is CircuitState.CLOSED
            and cached.throttle_in <= 0
        ):
            return Permit(service.id)

        owner = uuid.uuid4().hex
        probe_ttl = service.timeout + self._probe_margin
        admitted = await self._store.circuits.admit(
            service.id, cooldown=service.cb_cooldown, probe_ttl=probe_ttl, owner=owner
        )
        if admitted is None:
            return Permit(service.id)
        reading, throttle_in = admitted
        if reading.probe:
            self._metrics.circuit_transition(service.name, CircuitState.HALF_OPEN)
            return Permit(service.id, probe_owner=owner)
        self._remember(service.id, reading, throttle_in)
        if throttle_in > 0 and (reading.state is CircuitState.CLOSED or reading.retry_in <= 0):
            raise ThrottledError(service.name, throttle_in)  # no probe while throttled
        if reading.state is CircuitState.CLOSED:
            return Permit(service.id)
        # Losing the race for the probe reads "open, 0 s left": wait for the probe's verdict.
        retry_in = reading.retry_in or min(probe_ttl, service.cb_cooldown)
        raise CircuitOpenError(service.name, reading.state, retry_in)

    async def record(
        self,
        service: Service,
        permit: Permit,
        *,
        healthy: bool,
        log_id: int,
        log: LogEntryIn,
        throttle: float | None = None,
    ) -> CircuitOutcome | None:
        """Write the attempt's outcome over its log row and feed the circuit, together.

        ``healthy`` is False only for failures that say something about the service: 5xx,
        408, 429, timeouts, refused or dropped connections, broker errors. A request that the
        service answered and rejected (a 4xx caused by our payload) counts as healthy.
        ``throttle``: a 429's Retry-After (seconds), which holds the whole service.
        """
        recorded = await self._store.circuits.record_attempt(
            log_id,
            log,
            service_id=permit.service_id,
            healthy=healthy,
            probe_owner=permit.probe_owner,
            threshold=service.cb_threshold,
            cooldown=service.cb_cooldown,
            throttle=throttle,
        )
        if recorded is None:
            self._cache.pop(service.id, None)
            return None
        reading, throttle_in = recorded
        self._remember(service.id, reading, throttle_in)
        if reading.changed:
            if reading.state is CircuitState.OPEN:
                self._metrics.circuit_transition(service.name, CircuitState.OPEN)
            elif permit.probe_owner is not None and healthy:
                # Only the probe's success closes a circuit (a success under a closed circuit
                # changes the row too, resetting the count, but enters no state).
                self._metrics.circuit_transition(service.name, CircuitState.CLOSED)
        return reading

    def _remember(self, service_id: int, reading: CircuitReading, throttle_in: float) -> None:
        if reading.state is CircuitState.HALF_OPEN:
            self._cache.pop(service_id, None)
        else:
            self._cache[service_id] = _Cached(reading, time.monotonic(), throttle_in)
