"""Spans as the hub's code makes them, through the OpenTelemetry API only (no I/O here).

``hub.runtime.tracing`` sets tracing up (or not) from the OTEL_* variables and hands the
tracer to ``use_tracer``. Until then ``active_tracer()`` is None: the code that makes spans
then makes none and propagates nothing, so tracing off costs one check. This sits in core,
below the transports, because the HTTP and AMQP sends make spans of their own.

``HUB_TRACER`` always follows the tracer in use (a no-op one while tracing is off); Temporal's
interceptor is given it, so a Temporal client made once keeps tracing into whichever
provider is current.
"""

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NoOpTracer, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

W3C = TraceContextTextMapPropagator()
"""``traceparent`` and ``tracestate`` only: baggage that came in with a request is not handed
on to receivers."""

_NO_OP = NoOpTracer()
_tracer: trace.Tracer | None = None


def use_tracer(tracer: trace.Tracer | None) -> None:
    """Make spans with ``tracer`` from now on; None turns tracing off."""
    global _tracer
    _tracer = tracer


def active_tracer() -> trace.Tracer | None:
    """The tracer in use, or None while tracing is off."""
    return _tracer


class _CurrentTracer(trace.Tracer):
    """A tracer that delegates to the one in use at each call (a no-op one while off)."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return (_tracer or _NO_OP).start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        with (_tracer or _NO_OP).start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


HUB_TRACER: trace.Tracer = _CurrentTracer()


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    context: Context | None = None,
) -> Iterator[Span | None]:
    """A span around the block, current inside it; None (and no span) while tracing is off.

    An exception marks the span as failed with the exception's type only: its message may
    quote a URL or a response, which do not belong in a trace.
    """
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as err:
            failed(current, type(err).__qualname__)
            raise


def failed(current: Span, error_type: str, description: str | None = None) -> None:
    """Mark a span as failed: ``error.type`` (low-cardinality) and an ERROR status."""
    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR, description or error_type))


def inject(carrier: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) for the current span; nothing without one."""
    W3C.inject(carrier)


def extract(carrier: Mapping[str, str]) -> Context:
    """The trace context an incoming request carries (an empty one when it carries none or
    a malformed one)."""
    return W3C.extract(carrier)
