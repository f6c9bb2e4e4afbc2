"""The Prometheus text exposition (format 0.0.4) behind ``GET /metrics``.

Ingest counters live in this API process; everything else is counted by the store from the
retained delivery log, the DLQ and the circuits, so any API replica reports the same.
"""

import math
from collections import defaultdict
from collections.abc import Mapping

from hub.api.schemas import EMIT_OUTCOMES
from hub.core.models import CircuitState, Direction
from hub.store.metrics import StoreMetrics

LATENCY_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"


class _Exposition:
    """Text lines being written: a family's HELP and TYPE, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])

    def sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        text = ",".join(f'{key}="{_label_value(v)}"' for key, v in labels.items())
        self.lines.append(
            f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"
        )

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_metrics(data: StoreMetrics, received: Mapping[str, int]) -> str:
    """The metrics in Prometheus text format 0.0.4."""
    out = _Exposition()
    _received(out, received)
    _attempts(out, data)
    _latency(out, data)
    _deliveries(out, data)
    _dlq_depth(out, data)
    _circuits(out, data)
    return out.text()


def _received(out: _Exposition, received: Mapping[str, int]) -> None:
    out.family(
        "hub_events_received_total",
        "counter",
        "Events accepted by POST /events and webhooks since this API process started.",
    )
    for outcome in EMIT_OUTCOMES:
        out.sample("hub_events_received_total", {"outcome": outcome}, received.get(outcome, 0))


def _attempts(out: _Exposition, data: StoreMetrics) -> None:
    out.family("hub_delivery_attempts", "gauge", "Attempts in the retained delivery log.")
    for row in sorted(data.attempts, key=lambda r: (r["service"], r["direction"], r["status"])):
        labels = {"service": row["service"], "direction": row["direction"], "status": row["status"]}
        out.sample("hub_delivery_attempts", labels, row["n"])


def _latency(out: _Exposition, data: StoreMetrics) -> None:
    """A histogram per service: the store's cumulative buckets, then sum and count."""
    out.family(
        "hub_delivery_latency_ms",
        "histogram",
        "Latency of outbound attempts in the retained delivery log, in milliseconds.",
    )
    sums: defaultdict[str, float] = defaultdict(float)
    for row in data.attempts:
        if row["direction"] == Direction.OUT.value:
            sums[row["service"]] += float(row["latency_sum"])
    counts: dict[str, int] = {}
    for row in data.latency_buckets:  # ordered by service, le; the last le is +Inf
        le = float(row["le"])
        out.sample(
            "hub_delivery_latency_ms_bucket",
            {"service": row["service"], "le": _number(le)},
            row["n"],
        )
        if math.isinf(le):
            counts[row["service"]] = row["n"]
    for service, count in counts.items():
        out.sample("hub_delivery_latency_ms_sum", {"service": service}, sums[service])
        out.sample("hub_delivery_latency_ms_count", {"service": service}, count)


def _deliveries(out: _Exposition, data: StoreMetrics) -> None:
    out.family(
        "hub_deliveries",
        "gauge",
        "Deliveries by outcome: delivered = successful outbound attempts in the retained log, "
        "dead_lettered = rows in the dead-letter queue.",
    )
    delivered = {
        row["service"]: row["n"]
        for row in data.attempts
        if row["direction"] == Direction.OUT.value and row["status"] == "ok"
    }
    for service in sorted(delivered.keys() | data.dead_lettered.keys()):
        out.sample(
            "hub_deliveries",
            {"service": service, "outcome": "delivered"},
            delivered.get(service, 0),
        )
        out.sample(
            "hub_deliveries",
            {"service": service, "outcome": "dead_lettered"},
            data.dead_lettered.get(service, 0),
        )


def _dlq_depth(out: _Exposition, data: StoreMetrics) -> None:
    out.family("hub_dlq_depth", "gauge", "Unresolved dead-letter rows.")
    for service, depth in sorted(data.dlq_depth.items()):
        out.sample("hub_dlq_depth", {"service": service}, depth)


def _circuits(out: _Exposition, data: StoreMetrics) -> None:
    out.family("hub_circuit_state", "gauge", "1 for the circuit's current state, 0 for the others.")
    for circuit in data.circuits:
        for state in CircuitState:
            labels = {"service": circuit.service, "state": state.value}
            out.sample("hub_circuit_state", labels, 1 if circuit.state is state else 0)
    out.family("hub_circuit_failures", "gauge", "Consecutive failures the circuit has counted.")
    for circuit in data.circuits:
        out.sample("hub_circuit_failures", {"service": circuit.service}, circuit.failures)


def _label_value(value: str) -> str:
    """A label value escaped as the format requires: backslash, quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """A sample value: integers without a fraction, infinities as +Inf/-Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
