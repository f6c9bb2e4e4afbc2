"""Traces from POST /events to the receiver: the real app, a real worker with Temporal's
tracing interceptor, the Temporal dev server, an HTTP sink and RabbitMQ; spans in memory.

The traced worker has a task queue of its own (the session's worker is not traced), and its
Temporal client keeps the interceptor across tests: it follows whichever tracing set-up is
current, so each test installs its own exporter (or OTEL_* variables) and shuts it down.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Sequence

import aio_pika
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr
from temporalio.worker import Worker

from hub.api import create_app
from hub.client import HubClient
from hub.core.models import DispatchResult, Outcome
from hub.engine.schedules import ensure_schedules
from hub.engine.worker import running_worker
from hub.runtime import otel
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import free_port
from hub.runtime.tracing import (
    API_SERVICE,
    flush_tracing,
    setup_tracing,
    shutdown_tracing,
    tracing_enabled,
    tracing_plan,
)
from tests.sink import HttpSink
from tests.test_amqp import BROKER, drain, fresh_queue
from workflows.dispatch import DispatchEventWorkflow

API_TOKEN = "api-TOKEN-tracing-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SERVICE_TOKEN = "svc-TOKEN-in-no-span-4567"
PATH_TOKEN = "path-TOKEN-in-no-span-89"
OTEL_LOGGERS = ("hub.runtime.tracing", "opentelemetry")


@pytest.fixture(scope="module")
def traced_settings(settings):
    return settings.model_copy(
        update={"task_queue": f"{settings.task_queue}-traced", "api_token": SecretStr(API_TOKEN)}
    )


@pytest.fixture(scope="module")
async def traced_client(traced_settings):
    return await connect_temporal(traced_settings, interceptors=[otel.HubTracingInterceptor()])


@pytest.fixture(scope="module")
async def traced_worker(settings, traced_settings, traced_client, worker, temporal):
    """A worker whose client (and so the worker) has the tracing interceptor."""
    async with running_worker(traced_settings, temporal=traced_client) as running:
        yield running
    # Starting it pointed the hub's schedules at its task queue: point them back.
    await ensure_schedules(temporal, settings)


@pytest.fixture(scope="module")
async def app(traced_settings, store, traced_client, traced_worker):
    app = create_app(traced_settings, store=store, temporal=traced_client)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", headers=AUTH) as c:
        yield c


@pytest.fixture
def spans():
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    assert setup_tracing("temporal-hub-test", exporter=exporter)
    yield exporter
    shutdown_tracing()


@pytest.fixture
def rule_for(app, store, make_rule):
    """A rule the app's own rule index knows at once."""

    async def make(event: str, service, **fields):
        rule = await make_rule(event, service, **fields)
        await app.state.api.hub.index.refresh(min_version=await store.rules.config_version())
        return rule

    return make


async def post_event(api, name: str, event_id: str) -> str:
    response = await api.post("/events", json={"name": name, "id": event_id, "data": {"n": 1}})
    assert response.status_code == 202, response.text
    return response.json()["workflow_id"]


async def outcome(client, workflow_id: str) -> DispatchResult:
    handle = client.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id)
    return await handle.result()


def parse_traceparent(value: str) -> tuple[int, int]:
    """(trace id, parent span id) of a W3C traceparent header."""
    version, trace_id, span_id, flags = value.split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    assert int(flags, 16) & 1, "sampled"
    return int(trace_id, 16), int(span_id, 16)


def chain(spans: Sequence[ReadableSpan], trace_id: int, span_id: int) -> list[ReadableSpan]:
    """From a span up to its trace's root; fails if any parent is missing."""
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == trace_id}
    found = [by_id[span_id]]
    while (parent := found[-1].parent) is not None:
        assert parent.trace_id == trace_id
        assert parent.span_id in by_id, f"the parent of {found[-1].name} was not exported"
        found.append(by_id[parent.span_id])
    return found


def attribute_text(spans: Sequence[ReadableSpan]) -> str:
    return repr([(s.name, dict(s.attributes or {}), s.status.description) for s in spans])


async def test_one_unbroken_chain_from_post_events_to_the_sink(
    api, spans, sink, make_service, rule_for, traced_client, unique
):
    service = await make_service(auth_type="bearer", token=SERVICE_TOKEN)
    await rule_for(f"{unique}.traced", service, endpoint=f"/hooks/{PATH_TOKEN}")

    workflow_id = await post_event(api, f"{unique}.traced", f"{unique}-1")

    assert (await outcome(traced_client, workflow_id)).outcome is Outcome.DELIVERED
    flush_tracing()
    [received] = sink.at(f"/hooks/{PATH_TOKEN}")
    trace_id, parent_id = parse_traceparent(received.headers["traceparent"])
    found = chain(spans.get_finished_spans(), trace_id, parent_id)
    # The first attempt is made with the plan, in one local activity (activities.dispatch).
    assert [s.name for s in found] == [
        "POST",
        "RunActivity:plan_and_send",
        "StartActivity:plan_and_send",
        "StartWorkflow:DispatchEventWorkflow",
        "HubClient.emit",
        "POST /events",
    ]
    send, *_, root = found
    assert send.kind is SpanKind.CLIENT
    assert send.attributes["http.response.status_code"] == 200
    assert send.attributes["hub.event.id"] == f"{unique}-1"
    assert send.attributes["hub.attempt"] == 1
    assert root.kind is SpanKind.SERVER and root.parent is None
    assert root.attributes["http.route"] == "/events"
    assert root.attributes["http.response.status_code"] == 202
    assert root.resource.attributes["service.name"] == "temporal-hub-test"
    # The workflow's own spans are in the same trace, under the StartWorkflow span.
    names = {s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id}
    assert "RunWorkflow:DispatchEventWorkflow" in names, names
    text = attribute_text(spans.get_finished_spans())
    assert SERVICE_TOKEN not in text and PATH_TOKEN not in text


async def test_a_retried_delivery_stays_in_the_same_trace(
    api, spans, sink, make_service, rule_for, traced_client, unique
):
    service = await make_service()
    await rule_for(f"{unique}.retried", service, endpoint="/flaky")
    sink.script("/flaky", 503)

    workflow_id = await post_event(api, f"{unique}.retried", f"{unique}-r")

    result = await outcome(traced_client, workflow_id)
    assert result.outcome is Outcome.DELIVERED
    flush_tracing()
    first, second = sink.at("/flaky")
    (trace_a, span_a), (trace_b, span_b) = (
        parse_traceparent(r.headers["traceparent"]) for r in (first, second)
    )
    assert trace_a == trace_b and span_a != span_b
    exported = spans.get_finished_spans()
    failed, delivered = chain(exported, trace_a, span_a), chain(exported, trace_b, span_b)
    assert failed[-1] is delivered[-1] and failed[-1].name == "POST /events"
    assert failed[0].status.status_code is StatusCode.ERROR
    assert failed[0].attributes["http.response.status_code"] == 503
    assert failed[0].attributes["hub.attempt"] == 1
    assert delivered[0].attributes["hub.attempt"] == 2
    # The first attempt ran with the plan in the workflow task (local), the second as a
    # regular activity.
    assert [s.name for s in failed[1:3]] == [
        "RunActivity:plan_and_send",
        "StartActivity:plan_and_send",
    ]
    assert [s.name for s in delivered[1:3]] == [
        "RunActivity:deliver_http",
        "StartActivity:deliver_http",
    ]


@pytest.fixture
async def replaying_worker(settings, traced_settings, traced_client, temporal, monkeypatch):
    """A traced worker that caches no workflow: every workflow task replays the history."""
    import hub.engine.worker as engine

    queue = f"{traced_settings.task_queue}-replay"
    monkeypatch.setattr(engine, "Worker", functools.partial(Worker, max_cached_workflows=0))
    async with running_worker(traced_settings.model_copy(update={"task_queue": queue})):
        yield queue
    await ensure_schedules(temporal, settings)


async def test_a_replayed_workflow_stays_in_the_same_trace(
    spans, sink, make_service, make_rule, store, traced_settings, replaying_worker, unique
):
    service = await make_service()
    await make_rule(f"{unique}.replayed", service, endpoint="/replayed")
    sink.script("/replayed", 503, 503)
    settings = traced_settings.model_copy(update={"task_queue": replaying_worker})
    client = await connect_temporal(settings, interceptors=[otel.HubTracingInterceptor()])
    async with HubClient.connect(settings, temporal=client, store=store) as hub:
        result = await hub.emit(f"{unique}.replayed", {}, event_id=f"{unique}-r", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    flush_tracing()
    traceparents = [parse_traceparent(r.headers["traceparent"]) for r in sink.at("/replayed")]
    assert len(traceparents) == 3
    roots = {chain(spans.get_finished_spans(), *tp)[-1].name for tp in traceparents}
    assert roots == {"HubClient.emit"}
    [trace_id] = {trace for trace, _ in traceparents}
    # Replays make no second span for what already happened.
    names = [s.name for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    assert names.count("RunWorkflow:DispatchEventWorkflow") == 1
    assert names.count("StartActivity:plan_and_send") == 1
    assert names.count("StartActivity:deliver_http") == 2


async def test_an_amqp_publish_carries_the_trace_in_its_headers(
    api, spans, make_service, rule_for, traced_client, unique
):
    connection = await aio_pika.connect_robust(BROKER)
    async with connection:
        queue = await fresh_queue(await connection.channel(), f"{unique}-traced")
        service = await make_service(type="amqp", base_url=BROKER)
        await rule_for(f"{unique}.published", service, endpoint=f"/{unique}-traced")

        workflow_id = await post_event(api, f"{unique}.published", f"{unique}-p")

        assert (await outcome(traced_client, workflow_id)).outcome is Outcome.DELIVERED
        [message] = await drain(queue, 1)
    flush_tracing()
    trace_id, parent_id = parse_traceparent(str(message.headers["traceparent"]))
    found = chain(spans.get_finished_spans(), trace_id, parent_id)
    publish, *_, root = found
    assert publish.name == "publish amq.default" and publish.kind is SpanKind.PRODUCER
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == f"{unique}-traced"
    assert publish.attributes["messaging.message.id"] == message.message_id
    assert "guest" not in attribute_text(found)
    assert root.name == "POST /events"


async def test_an_incoming_traceparent_is_the_parent_of_the_request(
    api, spans, sink, make_service, rule_for, traced_client, unique
):
    service = await make_service()
    await rule_for(f"{unique}.continued", service, endpoint="/continued")
    producer_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{producer_trace}-00f067aa0ba902b7-01"}

    response = await api.post(
        "/events", json={"name": f"{unique}.continued", "id": f"{unique}-c"}, headers=headers
    )

    await outcome(traced_client, response.json()["workflow_id"])
    flush_tracing()
    [received] = sink.at("/continued")
    trace_id, parent_id = parse_traceparent(received.headers["traceparent"])
    assert trace_id == int(producer_trace, 16)
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    span_id = parent_id
    while by_id[span_id].parent is not None and by_id[span_id].parent.span_id in by_id:
        span_id = by_id[span_id].parent.span_id
    assert by_id[span_id].name == "POST /events"
    assert by_id[span_id].parent.span_id == 0x00F067AA0BA902B7


async def test_request_spans_are_named_by_route_never_by_path(api, spans, unique):
    await api.post(f"/webhooks/{PATH_TOKEN}?token={SERVICE_TOKEN}", json={})
    await api.get(f"/no/such/{PATH_TOKEN}")
    await api.get("/healthz")  # probes and scrapes make no span
    await api.get("/metrics")

    flush_tracing()
    found = spans.get_finished_spans()
    assert [s.name for s in found] == ["POST /webhooks/{service}", "GET"]
    assert found[0].attributes["http.route"] == "/webhooks/{service}"
    assert PATH_TOKEN not in attribute_text(found) and SERVICE_TOKEN not in attribute_text(found)


async def test_with_tracing_off_nothing_is_propagated(hub, sink, make_service, make_rule, unique):
    assert not tracing_enabled()
    service = await make_service()
    await make_rule(f"{unique}.plain", service, endpoint="/plain")

    result = await hub.emit(f"{unique}.plain", {"n": 1}, event_id=f"{unique}-0", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    [received] = sink.at("/plain")
    assert "traceparent" not in received.headers and "tracestate" not in received.headers
    assert hub.temporal.config()["interceptors"] == []


async def test_spans_reach_an_otlp_collector_named_by_the_variables(
    api, sink, make_service, rule_for, traced_client, unique, monkeypatch
):
    collector = HttpSink()
    await collector.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k3y")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "hub-under-test")
        assert setup_tracing(API_SERVICE)
        service = await make_service()
        await rule_for(f"{unique}.exported", service, endpoint="/exported")
        workflow_id = await post_event(api, f"{unique}.exported", f"{unique}-e")
        assert (await outcome(traced_client, workflow_id)).outcome is Outcome.DELIVERED
        await asyncio.to_thread(shutdown_tracing)  # flushes; the collector runs on this loop
    finally:
        await collector.stop()
    posts = collector.at("/v1/traces")
    assert posts and {p.headers["content-type"] for p in posts} == {"application/x-protobuf"}
    assert posts[0].headers["x-collector-key"] == "k3y"
    names, services = set(), set()
    for post in posts:
        request = ExportTraceServiceRequest.FromString(post.body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes}
            names |= {s.name for scope in resource_spans.scope_spans for s in scope.spans}
    assert {"POST /events", "HubClient.emit", "RunActivity:plan_and_send", "POST"} <= names
    assert "hub-under-test" in services


def otel_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(OTEL_LOGGERS)
    ]


async def test_an_unreachable_collector_costs_one_warning_and_no_delivery(
    api, sink, make_service, rule_for, traced_client, unique, monkeypatch, caplog
):
    closed = free_port()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    caplog.set_level(logging.INFO)
    assert setup_tracing(API_SERVICE)
    try:
        service = await make_service()
        await rule_for(f"{unique}.lost", service, endpoint="/lost")
        for n in range(3):
            workflow_id = await post_event(api, f"{unique}.lost", f"{unique}-{n}")
            assert (await outcome(traced_client, workflow_id)).outcome is Outcome.DELIVERED
            await asyncio.sleep(0.3)  # a batch goes out (and fails) between events
        assert all("traceparent" in r.headers for r in sink.at("/lost"))
        flush_tracing()
    finally:
        started = time.monotonic()
        shutdown_tracing()
        assert time.monotonic() - started < 3
    [warning] = otel_warnings(caplog)
    assert f"http://127.0.0.1:{closed}/v1/traces" in warning
    assert "deliveries are not affected" in warning


async def test_a_malformed_endpoint_is_one_warning_and_tracing_stays_off(
    api, sink, make_service, rule_for, traced_client, unique, monkeypatch, caplog
):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:s3cret@[::1:4318")

    assert not setup_tracing(API_SERVICE)

    [warning] = otel_warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warning and "s3cret" not in warning
    service = await make_service()
    await rule_for(f"{unique}.untraced", service, endpoint="/untraced")
    workflow_id = await post_event(api, f"{unique}.untraced", f"{unique}-u")
    assert (await outcome(traced_client, workflow_id)).outcome is Outcome.DELIVERED
    [received] = sink.at("/untraced")
    assert "traceparent" not in received.headers
    assert len(otel_warnings(caplog)) == 1


# The rules, read from the variables alone.


def test_tracing_is_off_unless_the_variables_ask():
    assert tracing_plan({}).exporters == []
    assert tracing_plan({"OTEL_SERVICE_NAME": "x"}).exporters == []
    on = tracing_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert (on.exporters, on.warnings) == (["otlp"], [])
    assert on.endpoint == "http://collector:4318/v1/traces"
    traces = tracing_plan({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/otlp/traces"})
    assert traces.endpoint == "https://c.example/otlp/traces"
    assert tracing_plan({"OTEL_TRACES_EXPORTER": "otlp"}).endpoint == (
        "http://localhost:4318/v1/traces"
    )
    assert tracing_plan({"OTEL_TRACES_EXPORTER": "console"}).exporters == ["console"]
    assert tracing_plan({"OTEL_TRACES_EXPORTER": "otlp, console"}).exporters == ["otlp", "console"]


def test_the_variables_that_turn_tracing_off():
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert tracing_plan(endpoint | {"OTEL_SDK_DISABLED": "true"}).exporters == []
    assert tracing_plan(endpoint | {"OTEL_TRACES_EXPORTER": "none"}).exporters == []


@pytest.mark.parametrize(
    "endpoint",
    [
        "collector:4318",
        "localhost",
        "http://",
        "http://collector:port",
        "http://collector:99999",
        "http://[::1",
        "ftp://collector",
        "http://coll ector:4318",
    ],
)
def test_a_malformed_endpoint_is_one_warning_and_no_otlp(endpoint):
    plan = tracing_plan({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert plan.exporters == []
    [warning] = plan.warnings
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warning


def test_unsupported_choices_are_a_warning_each_and_otlp_http_is_used():
    plan = tracing_plan(
        {
            "OTEL_TRACES_EXPORTER": "otlp,zipkin",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:pw@collector:4317",
        }
    )
    assert plan.exporters == ["otlp"]
    zipkin, grpc = plan.warnings
    assert "'zipkin' is not supported" in zipkin
    assert "'grpc' is not supported" in grpc and "http/protobuf" in grpc
    assert "pw" not in grpc


def test_the_service_name_is_the_process_unless_otel_service_name_says(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert otel.resource(API_SERVICE).attributes["service.name"] == "temporal-hub-api"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,env=prod")
    found = otel.resource(API_SERVICE).attributes
    assert (found["service.name"], found["env"]) == ("from-attributes", "prod")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hub-eu")
    assert otel.resource(API_SERVICE).attributes["service.name"] == "hub-eu"
