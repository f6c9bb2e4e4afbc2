"""The hub's Prometheus metrics (prometheus_client): counters and a histogram updated where
things happen, gauges read from the database when scraped, and the Temporal runtime's own
metrics appended to the same exposition.

One ``HubMetrics`` per process (``hub dev`` shares one between its worker and its API), handed
to the objects that count through their constructors; a test gives a worker its own registry
and reads exact values from it.
"""

import asyncio
import logging
from collections.abc import Iterator

import asyncpg
import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.core.models import CircuitState
from hub.store import UNAVAILABLE_ERRORS, Store
from hub.store.metrics import GaugeReading

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STORE_TIMEOUT = 2.0
"""Seconds the database gauges may take; past it the scrape says hub_store_up 0."""
TEMPORAL_TIMEOUT = 1.0
"""Seconds the Temporal runtime's exporter (on loopback) may take; past it, ours alone."""
GAUGE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)
"""A database that is down, or a statement it refused: either way no gauges this time."""
SOURCES = ("api", "webhook")
EMIT_OUTCOMES = ("started", "duplicate", "no_match")


def status_class(status_code: int | None, delivered: bool) -> str:
    """``2xx``..``5xx`` when an HTTP status came back, ``ok`` for a confirmed AMQP publish,
    ``error`` when nothing answered (timeout, connection, broker refusal)."""
    if status_code is not None:
        return f"{status_code // 100}xx"
    return "ok" if delivered else "error"


COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hub_events_received_total": (
        "Events submitted to this API process (POST /events, POST /webhooks/{service}), by "
        "what the submission did.",
        ("source", "outcome"),
    ),
    "hub_deliveries_total": (
        "Deliveries that ended: delivered (an attempt succeeded, replays included) or "
        "dead_lettered (a new DLQ row was written).",
        ("service", "transport", "outcome"),
    ),
    "hub_delivery_attempts_total": (
        "Delivery attempts by how they ended: 2xx..5xx (the HTTP status), ok (AMQP publish "
        "confirmed), error (no answer), unsendable (could not be prepared). A delivery held "
        "by an open circuit makes no attempt (hub_delivery_holds_total).",
        ("service", "transport", "status_class"),
    ),
    "hub_circuit_transitions_total": (
        "Circuit breaker transitions this process made, by the state entered.",
        ("service", "to"),
    ),
    "hub_dlq_writes_total": ("New dead-letter rows written.", ("service",)),
    "hub_dlq_replays_total": (
        "Dead-letter replays that finished, by whether they delivered.",
        ("service", "outcome"),
    ),
    "hub_responses_consumed_total": (
        "AMQP response messages logged and acked.",
        ("service",),
    ),
    "hub_responses_poisoned_total": (
        "AMQP response messages that were not JSON: moved to <queue>.dlq and rejected.",
        ("service",),
    ),
    "hub_delivery_waits_total": (
        "Delivery attempts that waited, nothing sent, because the hub's database was "
        "unavailable (Temporal retries them without using up an attempt).",
        ("service", "reason"),
    ),
    "hub_delivery_holds_total": (
        "Deliveries held without using an attempt, by why: paused, circuit_open, "
        "rate_limited, throttled (a 429's Retry-After); counted when a hold begins.",
        ("service", "reason"),
    ),
}
"""The counters: name -> (HELP, label names)."""
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hub_delivery_attempt_duration_seconds": (
        "Time of delivery attempts that reached the network, from send to answer.",
        ("service", "transport"),
    ),
}
GAUGES = ("hub_store_up", "hub_dlq_depth", "hub_circuit_state", "hub_circuit_failures")
"""Read from the database at scrape time (see DatabaseGauges)."""


class HubMetrics:
    """The hub's counters and histogram on one registry (a new one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide, idempotent
        self.registry = registry if registry is not None else CollectorRegistry()
        self._counters = {
            name: Counter(name, text, labels, registry=self.registry)
            for name, (text, labels) in COUNTERS.items()
        }
        name = "hub_delivery_attempt_duration_seconds"
        text, labels = HISTOGRAMS[name]
        self._duration = Histogram(
            name, text, labels, buckets=ATTEMPT_BUCKETS, registry=self.registry
        )

    def _inc(self, name: str, *labels: str) -> None:
        self._counters[name].labels(*labels).inc()

    def expect_events(self) -> None:
        """Show every events-received series at 0 before the first event (the API calls
        this; a worker receives none, so its endpoint does not show them)."""
        for source in SOURCES:
            for outcome in EMIT_OUTCOMES:
                self._counters["hub_events_received_total"].labels(source, outcome)

    def received(self, source: str, outcome: str) -> None:
        """An event submitted through the API (``api``) or a webhook (``webhook``)."""
        self._inc("hub_events_received_total", source, outcome)

    def attempt(
        self, service: str, transport: str, status_class: str, seconds: float | None = None
    ) -> None:
        """One attempt; ``seconds`` when it reached the network."""
        self._inc("hub_delivery_attempts_total", service, transport, status_class)
        if seconds is not None:
            self._duration.labels(service, transport).observe(seconds)

    def delivery(self, service: str, transport: str, outcome: str) -> None:
        """A delivery that ended: ``delivered`` or ``dead_lettered``."""
        self._inc("hub_deliveries_total", service, transport, outcome)

    def circuit_transition(self, service: str, to: CircuitState) -> None:
        self._inc("hub_circuit_transitions_total", service, to.value)

    def dlq_written(self, service: str) -> None:
        self._inc("hub_dlq_writes_total", service)

    def dlq_replayed(self, service: str, delivered: bool) -> None:
        self._inc("hub_dlq_replays_total", service, "delivered" if delivered else "failed")

    def response(self, service: str, *, poisoned: bool) -> None:
        """A response message consumed (logged and acked), or poisoned (dead-lettered)."""
        kind = "poisoned" if poisoned else "consumed"
        self._inc(f"hub_responses_{kind}_total", service)

    def wait(self, service: str, reason: str = "database") -> None:
        self._inc("hub_delivery_waits_total", service, reason)

    def hold(self, service: str, reason: str) -> None:
        """A delivery began to wait for ``reason`` (a HoldReason value), using no attempt."""
        self._inc("hub_delivery_holds_total", service, reason)

    async def scrape(self, store: Store, temporal_url: str | None = None) -> bytes:
        """The exposition: this registry, the database gauges (read now, with indexed
        queries; hub_store_up 0 if they fail), then the Temporal runtime's metrics from
        ``temporal_url`` when given and answering. Never raises for a server that is down."""
        reading = await read_gauges(store)
        ours = generate_latest(self.registry) + generate_latest(DatabaseGauges(reading))
        if temporal_url is None:
            return ours
        return ours + await runtime_exposition(temporal_url)


async def read_gauges(store: Store) -> GaugeReading | None:
    """The database gauges, or None if the database did not answer in time."""
    try:
        async with asyncio.timeout(STORE_TIMEOUT):
            return await store.metrics.gauges()
    except GAUGE_ERRORS as error:
        log.warning("metrics: the database gauges are unavailable (%s)", type(error).__name__)
        return None


async def runtime_exposition(url: str) -> bytes:
    """The Temporal runtime's own exposition, or nothing if its exporter does not answer."""
    try:
        # verify=False: plain HTTP on loopback, and no CA bundle to load on every scrape.
        async with httpx.AsyncClient(
            timeout=TEMPORAL_TIMEOUT, verify=False, trust_env=False
        ) as client:
            response = await client.get(url)
            response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("metrics: Temporal's runtime metrics are unavailable (%s)", error)
        return b""
    body = response.content
    return body if body.endswith(b"\n") or not body else body + b"\n"


class DatabaseGauges(Collector):
    """The database gauges of one scrape, as a collector for ``generate_latest``."""

    def __init__(self, reading: GaugeReading | None) -> None:
        self._reading = reading

    def collect(self) -> Iterator[Metric]:
        reading = self._reading
        up = GaugeMetricFamily(
            "hub_store_up",
            "1 when the database answered this scrape's gauge queries in time, else 0 (and "
            "no hub_dlq_depth or hub_circuit_* samples).",
            value=0 if reading is None else 1,
        )
        yield up
        if reading is None:
            return
        depth = GaugeMetricFamily(
            "hub_dlq_depth", "Unresolved dead-letter rows, by service.", labels=["service"]
        )
        for service, value in sorted(reading.dlq_depth.items()):
            depth.add_metric([service], value)
        yield depth
        state = GaugeMetricFamily(
            "hub_circuit_state",
            "1 for the circuit's current state, 0 for the others.",
            labels=["service", "state"],
        )
        failures = GaugeMetricFamily(
            "hub_circuit_failures",
            "Consecutive failures the circuit has counted.",
            labels=["service"],
        )
        for circuit in sorted(reading.circuits, key=lambda c: c.service):
            for each in CircuitState:
                state.add_metric([circuit.service, each.value], 1 if circuit.state is each else 0)
            failures.add_metric([circuit.service], circuit.failures)
        yield state
        yield failures
