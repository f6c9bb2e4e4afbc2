"""Traces with OpenTelemetry, set up from the standard OTEL_* variables; off by default.

Tracing is on when a process's entry point calls ``setup_tracing`` and the variables ask for
it: OTEL_TRACES_EXPORTER names ``otlp`` and/or ``console``, or (with OTEL_TRACES_EXPORTER
unset) OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Nothing is
on while OTEL_SDK_DISABLED is true or OTEL_TRACES_EXPORTER is ``none``. (OpenTelemetry's own
default exporter is otlp; the hub does not send anything anywhere unless told to.)

Spans go through a BatchSpanProcessor (OTEL_BSP_*) to an OTLP http/protobuf exporter
(OTEL_EXPORTER_OTLP_* endpoint, headers, timeout, compression, certificates). The resource
comes from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the service name defaults to the
process's (temporal-hub-api, temporal-hub-worker, temporal-hub for ``hub dev``). Sampling
follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.

Tracing never holds up or fails a delivery: spans are exported from the processor's thread,
and a collector that does not answer costs one warning per outage (the exporter's own
per-batch messages are kept out of the log). A malformed endpoint is one warning, and
tracing stays off. Shutdown (at exit) flushes for at most ``SHUTDOWN_SECONDS``.
"""

import atexit
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from temporalio.client import Interceptor

from hub import __version__
from hub.core.tracing import active_tracer, use_tracer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from hub.runtime.otel import Quiet

log = logging.getLogger(__name__)

API_SERVICE = "temporal-hub-api"
WORKER_SERVICE = "temporal-hub-worker"
DEV_SERVICE = "temporal-hub"
SHUTDOWN_SECONDS = 2.0
EXPORTERS = ("otlp", "console")
PROTOCOL = "http/protobuf"
DEFAULT_ENDPOINT = "http://localhost:4318/"
TRUE = frozenset({"true", "1", "yes", "on"})


@dataclass
class Plan:
    """What the variables ask for: the exporters to build, and what to warn about."""

    exporters: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    endpoint: str | None = None
    """The OTLP endpoint spans go to, when ``otlp`` is among the exporters."""


def tracing_plan(environ: Mapping[str, str]) -> Plan:
    """Read the OTEL_* variables (a pure function, so every rule is testable on its own)."""
    plan = Plan()
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in TRUE:
        return plan
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    traces_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not names:
        names = "otlp" if traces_endpoint or endpoint else "none"
    for name in dict.fromkeys(n.strip() for n in names.split(",") if n.strip()):
        if name in EXPORTERS:
            plan.exporters.append(name)
        elif name != "none":
            plan.warnings.append(
                f"OTEL_TRACES_EXPORTER: {name!r} is not supported (only otlp and console): ignored"
            )
    if "otlp" in plan.exporters:
        _plan_otlp(plan, environ, traces_endpoint, endpoint)
    return plan


def _plan_otlp(plan: Plan, environ: Mapping[str, str], traces_endpoint: str, endpoint: str) -> None:
    """Check the endpoint the exporter will use and the protocol it is asked to speak."""
    variable = (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" if traces_endpoint else "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    value = traces_endpoint or endpoint or DEFAULT_ENDPOINT
    if problem := endpoint_problem(value):
        plan.exporters.remove("otlp")
        plan.warnings.append(
            f"{variable}={redact(value)!r} is not a usable URL ({problem}): traces are not "
            "exported there"
        )
        return
    plan.endpoint = value if traces_endpoint else f"{value.removesuffix('/')}/v1/traces"
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip()
        if protocol:
            if protocol != PROTOCOL:
                plan.warnings.append(
                    f"{name}={protocol!r} is not supported: the hub exports traces with "
                    f"{PROTOCOL} (to {where(plan.endpoint)})"
                )
            break


def endpoint_problem(url: str) -> str | None:
    """Why an OTLP endpoint cannot be used, or None when it can."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        return str(err)
    if any(c.isspace() for c in url):
        return "it contains a space"
    if parts.scheme not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0"
    return None


def redact(url: str) -> str:
    """A URL without any user:password part, even a malformed one."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def where(url: str) -> str:
    """An endpoint for a log line: no credentials, no query."""
    return redact(url).split("?", 1)[0]


@dataclass
class _Active:
    provider: "TracerProvider"
    exporter: "SpanExporter"
    quiet: "Quiet | None"


_active: _Active | None = None
_lock = threading.Lock()
_at_exit = False


def setup_tracing(service_name: str, *, exporter: "SpanExporter | None" = None) -> bool:
    """Set tracing up for this process, once; True when it is on.

    ``exporter`` replaces what the variables name (tests pass an InMemorySpanExporter) and
    turns tracing on whatever they say. Call it before the process connects to Temporal:
    ``connect_temporal`` adds Temporal's interceptor only while tracing is on.
    """
    global _active, _at_exit
    with _lock:
        if _active is not None:
            return True
        plan = tracing_plan(os.environ) if exporter is None else None
        for warning in plan.warnings if plan else []:
            log.warning("tracing: %s", warning)
        if plan is not None and not plan.exporters:
            return False
        from hub.runtime import otel

        exporters, quiet = _exporters(plan) if plan else ([exporter], None)
        top = otel.combined([e for e in exporters if e is not None])
        _active = _Active(otel.provider_for(service_name, top), top, quiet)
        use_tracer(_active.provider.get_tracer("temporal-hub", __version__))
        if not _at_exit:
            atexit.register(shutdown_tracing)
            _at_exit = True
    return True


def _exporters(plan: Plan) -> tuple[list["SpanExporter | None"], "Quiet | None"]:
    """The exporters the plan names; the OTLP one's SDK messages muted (``Quiet``)."""
    from hub.runtime import otel

    exporters: list[SpanExporter | None] = []
    quiet = None
    if plan.endpoint is not None:
        quiet = otel.Quiet()
        logging.getLogger(otel.OTLP_LOGGER).addFilter(quiet)
        exporters.append(otel.otlp_exporter(where(plan.endpoint), quiet))
    if "console" in plan.exporters:
        exporters.append(otel.console_exporter())
    return exporters, quiet


def tracing_enabled() -> bool:
    return active_tracer() is not None


def shutdown_tracing(timeout: float = SHUTDOWN_SECONDS) -> None:
    """Export what is pending, for at most ``timeout`` seconds, then turn tracing off.

    The SDK's shutdown waits up to 30 s for a collector that does not answer; it runs in a
    thread of its own here, and past the bound the exporter is shut down, which stops its
    retries, so a process never hangs on its way out.
    """
    global _active
    with _lock:
        active, _active = _active, None
        use_tracer(None)
    if active is None:
        return
    closing = threading.Thread(
        target=active.provider.shutdown, name="tracing-shutdown", daemon=True
    )
    try:
        closing.start()
    except RuntimeError:  # the interpreter is finalizing: no new thread, and no waiting
        active.exporter.shutdown()
        active.provider.shutdown()
        return
    closing.join(timeout * 0.8)
    if closing.is_alive():
        active.exporter.shutdown()
        closing.join(timeout * 0.2)
    if active.quiet is not None and not closing.is_alive():
        from hub.runtime.otel import OTLP_LOGGER

        logging.getLogger(OTLP_LOGGER).removeFilter(active.quiet)


def flush_tracing() -> None:
    """Export every finished span now (tests read them right after)."""
    if _active is not None:
        _active.provider.force_flush()


def temporal_interceptors() -> list[Interceptor]:
    """The Temporal client's interceptors: tracing while it is on, none otherwise."""
    if not tracing_enabled():
        return []
    from hub.runtime.otel import HubTracingInterceptor

    return [HubTracingInterceptor()]
