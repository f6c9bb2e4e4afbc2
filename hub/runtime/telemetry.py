"""The process's one Temporal runtime: Core's metrics on a private loopback Prometheus port
(the hub appends them to its own ``/metrics``, see hub.runtime.metrics), and Core's logs sent
through Python logging (``temporalio.core``) instead of written to stdout with ANSI colours.

Each ``Runtime`` has its own thread pool and exporter, so a process makes one, on first use,
and every Temporal client it connects (and so every worker) runs on it.
"""

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from hub.runtime.embedded import free_port

log = logging.getLogger(__name__)

CORE_LOGGER = "temporalio.core"
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds. Core's defaults (0.1 0.5 1 5 10 100 1000) cannot show a healthy queue's p99."""
BUCKET_OVERRIDES: Mapping[str, Sequence[float]] = {
    name: LATENCY_BUCKETS
    for name in (
        "workflow_task_schedule_to_start_latency",
        "activity_schedule_to_start_latency",
        "workflow_task_execution_latency",
        "activity_execution_latency",
    )
}
BIND_TRIES = 3
"""A free port can be taken between picking it and Core binding it: pick another."""


@dataclass(frozen=True)
class HubRuntime:
    """The runtime, and where its Prometheus exporter answers (None: metrics off)."""

    runtime: Runtime
    metrics_url: str | None


def telemetry_config(bind_address: str | None) -> TelemetryConfig:
    """Core's logs forwarded at WARN and above; its metrics on ``bind_address`` if given."""
    metrics = None
    if bind_address is not None:
        metrics = PrometheusConfig(
            bind_address=bind_address,
            durations_as_seconds=True,
            histogram_bucket_overrides=BUCKET_OVERRIDES,
        )
    forwarding = LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER))
    return TelemetryConfig(
        metrics=metrics,
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="WARN"), forwarding=forwarding
        ),
    )


@functools.cache
def process_runtime() -> HubRuntime:
    """The process's runtime, made on the first call; without metrics (and a warning) if
    Core could not bind a loopback port, since metrics must never stop a worker."""
    last: ValueError | None = None
    for _ in range(BIND_TRIES):
        address = f"127.0.0.1:{free_port()}"
        try:
            runtime = Runtime(telemetry=telemetry_config(address))
        except ValueError as error:  # "Failed starting Prometheus exporter: ..."
            last = error
            continue
        return HubRuntime(runtime, f"http://{address}/metrics")
    log.warning("Temporal's runtime metrics are off: %s", last)
    return HubRuntime(Runtime(telemetry=telemetry_config(None)), None)


def runtime_metrics_url(client: Client) -> str | None:
    """Where the client's runtime serves its metrics, if it runs on the hub's runtime."""
    hub = process_runtime()
    return hub.metrics_url if client.service_client.config.runtime is hub.runtime else None
