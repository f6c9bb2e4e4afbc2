"""The OpenTelemetry SDK side of ``hub.runtime.tracing``: the provider and its exporters,
quiet about a collector that does not answer, and Temporal's tracing interceptor.

Imported only once tracing is on: the SDK, the OTLP exporter and Temporal's contrib module
cost every command a tenth of a second to import.
"""

import logging
import threading
from collections.abc import Sequence
from textwrap import shorten

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from hub import __version__
from hub.core.tracing import HUB_TRACER

log = logging.getLogger("hub.runtime.tracing")

OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
"""Where the OTLP exporter logs every failed batch and every retry."""
CAUSE_CHARS = 300


class Quiet(logging.Filter):
    """Keeps the OTLP exporter's per-batch messages out of the log; remembers the first one
    of each export, for the one warning the hub writes instead."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.first is None:
            self.first = cause_of(record)
        return False


def cause_of(record: logging.LogRecord) -> str:
    """The error an exporter message is about (the exception among its arguments), else the
    whole message."""
    args = record.args if isinstance(record.args, tuple) else ()
    for arg in args:
        if isinstance(arg, BaseException):
            return f"{type(arg).__name__}: {arg}"
    return record.getMessage()


class ReportingExporter(SpanExporter):
    """An exporter whose failures make one warning per outage, and one line on recovery."""

    def __init__(self, inner: SpanExporter, endpoint: str, quiet: Quiet) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._quiet = quiet
        self._failing = False
        self._lock = threading.Lock()
        self._shut = threading.Lock()
        self._down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self._quiet.first = None
            try:
                result = self._inner.export(spans)
                cause = self._quiet.first
            except Exception as err:
                result, cause = SpanExportResult.FAILURE, f"{type(err).__name__}: {err}"
            if result is SpanExportResult.SUCCESS:
                if self._failing:
                    log.info("traces are exported to %s again", self._endpoint)
                self._failing = False
            elif not self._failing:
                self._failing = True
                log.warning(
                    "traces cannot be exported to %s (%s); deliveries are not affected, spans "
                    "are dropped until the collector answers (logged once per outage)",
                    self._endpoint,
                    shorten(cause or "no answer", CAUSE_CHARS, placeholder="…"),
                )
            return result

    def shutdown(self) -> None:
        """Also stops an export that is waiting to retry; once is enough."""
        with self._shut:
            if not self._down:
                self._down = True
                self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class Fanout(SpanExporter):
    """otlp and console together: every batch to each."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self._exporters = list(exporters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        results = [exporter.export(spans) for exporter in self._exporters]
        ok = all(result is SpanExportResult.SUCCESS for result in results)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()


def otlp_exporter(endpoint: str, quiet: Quiet) -> SpanExporter:
    """OTLP over http/protobuf, configured by the OTEL_EXPORTER_OTLP_* variables."""
    return ReportingExporter(OTLPSpanExporter(), endpoint, quiet)


def console_exporter() -> SpanExporter:
    return ConsoleSpanExporter()


def combined(exporters: Sequence[SpanExporter]) -> SpanExporter:
    return exporters[0] if len(exporters) == 1 else Fanout(exporters)


def provider_for(service_name: str, exporter: SpanExporter) -> TracerProvider:
    """A provider exporting through one batch processor (OTEL_BSP_*); shut down by the hub,
    within a bound, not by the SDK's own exit handler (which may wait 30 s)."""
    provider = TracerProvider(resource=resource(service_name), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def resource(service_name: str) -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, else the process's own service name."""
    found = Resource.create({SERVICE_VERSION: __version__})
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: service_name}))
    return found


class HubTracingInterceptor(TracingInterceptor):
    """Temporal's (legacy, stable) tracing interceptor, on the hub's tracer.

    Its workflow spans take their parent from the context the StartWorkflow call put in the
    workflow's headers, so one trace covers a workflow's whole life, retries and replays
    included. Activities that carry no trace (those of workflows the schedules start) make
    no span: a root span per schedule tick would only be noise.
    """

    def __init__(self) -> None:
        super().__init__(HUB_TRACER)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TracedOnly(next, super().intercept_activity(next), self.header_key)


class _TracedOnly(ActivityInboundInterceptor):
    """Runs an activity through the tracing interceptor only when it carries a trace."""

    def __init__(
        self, next: ActivityInboundInterceptor, traced: ActivityInboundInterceptor, key: str
    ) -> None:
        super().__init__(next)
        self._traced = traced
        self._key = key

    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        if self._key in input.headers:
            return await self._traced.execute_activity(input)
        return await self.next.execute_activity(input)
