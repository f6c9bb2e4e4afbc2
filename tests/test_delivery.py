"""Events through the real worker, Temporal dev server, PostgreSQL and HTTP sinks."""

import asyncio
import base64
import json
import logging
import secrets
from urllib.parse import parse_qs

import pytest
from temporalio.client import WorkflowExecutionStatus

from hub.core.models import DeliveryStatus, DispatchInput, Event, Outcome, ReplayInput
from hub.core.visibility import HUB_OUTCOME, HUB_SERVICES
from tests.sink import Reply
from workflows.dispatch import DispatchEventWorkflow
from workflows.replay import ReplayDeadLetterWorkflow

RUN = secrets.token_hex(4)


async def test_post_put_patch_send_the_rendered_bytes(hub, sink, make_service, make_rule, unique):
    service = await make_service()
    template = '{"user": {{data.user.id}}, "name": "{{data.user.name}}", "tags": {{data.tags}}}'
    for method in ("POST", "PUT", "PATCH"):
        await make_rule(
            f"{unique}.updated",
            service,
            method=method,
            endpoint=f"/{method.lower()}",
            template=template,
        )
    data = {"user": {"id": 42, "name": 'Ana "A" Ñ'}, "tags": ["a", "b"]}
    result = await hub.emit(f"{unique}.updated", data, event_id=f"{unique}-1", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    expected = b'{"user": 42, "name": "Ana \\"A\\" \xc3\x91", "tags": ["a","b"]}'
    for method in ("POST", "PUT", "PATCH"):
        [request] = sink.at(f"/{method.lower()}")
        assert request.method == method
        assert request.body == expected
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-hub-event"] == f"{unique}.updated"
        assert request.headers["idempotency-key"].startswith(f"{unique}-1/")


async def test_get_sends_query_string_and_delete_sends_no_body(
    hub, sink, make_service, make_rule, unique
):
    service = await make_service(base_url=sink.url + "/api/")
    await make_rule(
        f"{unique}.deleted",
        service,
        method="GET",
        endpoint="/lookup",
        template='{"id": {{data.id}}, "q": "{{data.q}}", "flag": true, "none": null}',
    )
    await make_rule(f"{unique}.deleted", service, method="DELETE", endpoint="items/{{x}}")
    result = await hub.emit(f"{unique}.deleted", {"id": 5, "q": "a b&c"}, wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    [get] = sink.at("/api/lookup")
    assert get.method == "GET"
    assert get.body == b""
    assert parse_qs(get.query, keep_blank_values=True) == {
        "id": ["5"],
        "q": ["a b&c"],
        "flag": ["true"],
        "none": [""],
    }
    [delete] = sink.at("/api/items/{{x}}")
    assert delete.method == "DELETE"
    assert delete.body == b""


@pytest.mark.parametrize(
    ("auth_type", "header", "value"),
    [("bearer", "authorization", "Bearer s3cr3t-token"), ("apikey", "x-api-key", "s3cr3t-token")],
)
async def test_auth_headers(
    hub, temporal, store, sink, make_service, make_rule, unique, auth_type, header, value, caplog
):
    caplog.set_level(logging.DEBUG)
    service = await make_service(auth_type=auth_type, token="s3cr3t-token")
    await make_rule(f"{unique}.auth", service, endpoint="/auth")
    sink.script("/auth", 503, then=200)  # a failed attempt too: its error is logged
    result = await hub.emit(f"{unique}.auth", {}, wait=True)
    requests = sink.at("/auth")
    assert len(requests) == 2
    assert requests[-1].headers[header] == value
    other = {"authorization", "x-api-key"} - {header}
    assert not other & requests[-1].headers.keys()
    # The token is stored encrypted and appears in no log line, log row or workflow history.
    assert "s3cr3t-token" not in caplog.text
    stored = await store.pool.fetchval("SELECT token FROM services WHERE id = $1", service.id)
    assert "s3cr3t-token" not in stored
    rows = await store.log.recent(event_id=result.event_id)
    assert len(rows) == 2 and all("s3cr3t-token" not in r.model_dump_json() for r in rows)
    history = [
        e async for e in temporal.get_workflow_handle(result.workflow_id).fetch_history_events()
    ]
    assert all(b"s3cr3t-token" not in e.SerializeToString() for e in history)


async def test_credentials_in_the_url_are_used_and_never_shown(
    hub, store, sink, make_service, make_rule, unique
):
    url = sink.url.replace("http://", "http://ops:pa55w0rd@")
    service = await make_service(base_url=url)
    await make_rule(f"{unique}.basic", service, endpoint="/basic")
    result = await hub.emit(f"{unique}.basic", {}, wait=True)

    [request] = sink.at("/basic")
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"ops:pa55w0rd").decode()
    assert service.base_url == sink.url.replace("http://", "http://ops:***@")
    [row] = await store.log.recent(event_id=result.event_id)
    assert "pa55w0rd" not in row.model_dump_json() and "ops:***@" in row.target


async def test_no_auth_sends_no_credentials(hub, sink, make_service, make_rule, unique):
    service = await make_service()
    await make_rule(f"{unique}.anon", service, endpoint="/anon")
    await hub.emit(f"{unique}.anon", {}, wait=True)
    [request] = sink.at("/anon")
    assert not {"authorization", "x-api-key"} & request.headers.keys()


async def test_empty_template_sends_the_whole_event(hub, sink, make_service, make_rule, unique):
    service = await make_service()
    await make_rule(f"{unique}.whole", service, endpoint="/whole")
    await hub.emit(f"{unique}.whole", {"a": [1, 2]}, event_id=f"{unique}-w", wait=True)
    [request] = sink.at("/whole")
    body = json.loads(request.body)
    assert body["id"] == f"{unique}-w"
    assert body["name"] == f"{unique}.whole"
    assert body["data"] == {"a": [1, 2]}
    assert "occurred_at" in body


async def test_duplicate_event_id_starts_nothing_new(hub, sink, make_service, make_rule, unique):
    service = await make_service()
    await make_rule(f"{unique}.dup", service, endpoint="/dup")
    sink.script("/dup", Reply(delay=1.0))
    first = await hub.emit(f"{unique}.dup", {"n": 1}, event_id=f"{unique}-dup")
    while_running = await hub.emit(f"{unique}.dup", {"n": 2}, event_id=f"{unique}-dup", wait=True)
    after_completion = await hub.emit(f"{unique}.dup", {"n": 3}, event_id=f"{unique}-dup")

    assert not first.duplicate
    assert while_running.duplicate
    assert while_running.result.outcome is Outcome.DELIVERED
    assert after_completion.duplicate
    assert after_completion.workflow_id == first.workflow_id
    [request] = sink.at("/dup")
    assert json.loads(request.body)["data"] == {"n": 1}


async def test_wildcards_match_dotted_and_backslashed_names(
    hub, sink, make_service, make_rule, unique
):
    service = await make_service()
    await make_rule(f"{unique}.order.*", service, endpoint="/orders")
    await make_rule(f"\\{unique}\\event\\user_*", service, endpoint="/users")

    for name in (f"{unique}.order.created", f"{unique}.order.item.added"):
        result = await hub.emit(name, {}, wait=True)
        assert result.result.outcome is Outcome.DELIVERED
    user = await hub.emit(f"\\{unique}\\event\\user_created", {}, wait=True)
    assert user.result.outcome is Outcome.DELIVERED
    nothing = await hub.emit(f"\\{unique}\\event\\course_created", {})

    assert len(sink.at("/orders")) == 2
    assert len(sink.at("/users")) == 1
    assert not nothing.matched
    assert nothing.workflow_id is None


async def test_disabled_rules_and_services_never_match(
    hub, temporal, store, sink, make_service, make_rule, unique
):
    service = await make_service()
    await make_rule(f"{unique}.off", service, endpoint="/off", enabled=False)
    disabled_service = await make_service(enabled=False)
    await make_rule(f"{unique}.off", disabled_service, endpoint="/off")

    result = await hub.emit(f"{unique}.off", {}, event_id=f"{unique}-off")

    assert not result.matched
    assert sink.received == []
    workflows = [w async for w in temporal.list_workflows(f"WorkflowId = 'event-{unique}-off'")]
    assert workflows == []


async def test_workflow_without_matching_rule_ends_as_no_match(temporal, settings, worker, unique):
    # What happens when rules change between the emitter's check and the workflow's lookup.
    event = Event(id=f"{unique}-nm", name=f"{unique}.nobody")
    result = await temporal.execute_workflow(
        DispatchEventWorkflow.run,
        DispatchInput(event=event),
        id=f"event-{event.id}",
        task_queue=settings.task_queue,
    )
    assert result.outcome is Outcome.NO_MATCH
    description = await temporal.get_workflow_handle(f"event-{event.id}").describe()
    assert description.typed_search_attributes.get(HUB_OUTCOME) == "no_match"


async def test_flaky_sink_is_retried_until_delivered(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(max_attempts=5)
    await make_rule(f"{unique}.flaky", service, endpoint="/flaky")
    sink.script("/flaky", 500, 503, then=200)

    result = await hub.emit(f"{unique}.flaky", {}, event_id=f"{unique}-f", wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    assert result.result.deliveries[0].attempts == 3
    assert len(sink.at("/flaky")) == 3
    assert len({r.headers["idempotency-key"] for r in sink.at("/flaky")}) == 1
    logs = sorted(await store.log.recent(event_id=f"{unique}-f"), key=lambda r: r.attempt)
    assert [(r.attempt, r.status.value, r.status_code) for r in logs] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "ok", 200),
    ]
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in logs)
    assert await store.dlq.recent(event=f"{unique}-f") == []


async def test_always_failing_sink_is_dead_lettered_after_the_configured_attempts(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(max_attempts=3)
    rule = await make_rule(
        f"{unique}.down", service, endpoint="/down", template='{"order": {{data.order}}}'
    )
    sink.script("/down", then=Reply(status=500, body=b"database on fire"))

    result = await hub.emit(f"{unique}.down", {"order": 9}, event_id=f"{unique}-d", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    assert len(sink.at("/down")) == 3
    [dead] = await store.dlq.recent(event=f"{unique}-d")
    assert dead.payload == '{"order": 9}'
    assert dead.attempts == 3
    assert dead.rule_id == rule.id
    assert dead.service == service.name
    assert "HTTP 500" in dead.error and "database on fire" in dead.error
    assert dead.workflow_id == result.workflow_id
    assert result.result.deliveries[0].dlq_id == dead.id
    failed = await store.log.recent(event_id=f"{unique}-d", status="failed")
    assert sorted(r.attempt for r in failed) == [1, 2, 3]


async def test_client_error_goes_straight_to_the_dlq(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(max_attempts=5)
    await make_rule(f"{unique}.missing", service, endpoint="/missing")
    sink.script("/missing", then=404)

    result = await hub.emit(f"{unique}.missing", {}, event_id=f"{unique}-m", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    assert len(sink.at("/missing")) == 1
    [dead] = await store.dlq.recent(event=f"{unique}-m")
    assert dead.attempts == 1
    assert "HTTP 404" in dead.error


async def test_429_waits_for_retry_after(hub, store, sink, make_service, make_rule, unique):
    service = await make_service(backoff=0.05)
    await make_rule(f"{unique}.slow", service, endpoint="/limited")
    sink.script("/limited", Reply(status=429, headers={"Retry-After": "2"}), then=200)

    result = await hub.emit(f"{unique}.slow", {}, wait=True)

    assert result.result.outcome is Outcome.DELIVERED
    first, second = sink.at("/limited")
    assert second.at - first.at >= 1.9


async def test_timeout_is_retried_then_dead_lettered(
    hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(timeout=0.3, max_attempts=2)
    await make_rule(f"{unique}.hang", service, endpoint="/hang")
    sink.script("/hang", then=Reply(delay=1.5))

    result = await hub.emit(f"{unique}.hang", {}, event_id=f"{unique}-h", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [dead] = await store.dlq.recent(event=f"{unique}-h")
    assert dead.attempts == 2
    assert "timed out after 0.3s" in dead.error
    assert len(sink.at("/hang")) == 2


async def test_connection_refused_is_retried_then_dead_lettered(
    hub, store, make_service, make_rule, unique
):
    from hub.runtime.embedded import free_port

    service = await make_service(base_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)
    await make_rule(f"{unique}.refused", service)

    result = await hub.emit(f"{unique}.refused", {}, event_id=f"{unique}-r", wait=True)

    [dead] = await store.dlq.recent(event=f"{unique}-r")
    assert result.result.outcome is Outcome.DEAD_LETTERED
    assert dead.attempts == 2
    assert "ConnectError" in dead.error


async def test_invalid_template_is_dead_lettered_without_a_request(
    hub, store, sink, make_service, unique
):
    service = await make_service()
    # Every boundary refuses such a template; a rule written straight into the database
    # (or a template that only some events break) still reaches the worker.
    await store.pool.execute(
        "INSERT INTO rules (event, service_id, endpoint, template) VALUES ($1, $2, '/bad', $3)",
        f"{unique}.bad",
        service.id,
        '{"a": {{data.a}}',
    )
    await hub.index.refresh(min_version=await store.rules.config_version())

    result = await hub.emit(f"{unique}.bad", {"a": 1}, event_id=f"{unique}-b", wait=True)

    assert result.result.outcome is Outcome.DEAD_LETTERED
    assert sink.received == []
    [dead] = await store.dlq.recent(event=f"{unique}-b")
    assert dead.attempts == 0
    assert dead.payload is None
    assert "invalid JSON" in dead.error
    [log] = await store.log.recent(event_id=f"{unique}-b")
    assert log.status.value == "failed" and "invalid JSON" in log.error


async def test_one_service_fails_the_other_delivers(
    hub, temporal, store, sink, make_service, make_rule, unique
):
    good = await make_service()
    bad = await make_service(max_attempts=2)
    await make_rule(f"{unique}.split", good, endpoint="/good")
    await make_rule(f"{unique}.split", bad, endpoint="/bad")
    sink.script("/bad", then=500)

    result = await hub.emit(f"{unique}.split", {}, event_id=f"{unique}-s", wait=True)

    assert result.result.outcome is Outcome.PARTIAL
    by_service = {d.service: d for d in result.result.deliveries}
    assert by_service[good.name].status is DeliveryStatus.DELIVERED
    assert by_service[bad.name].status is DeliveryStatus.DEAD_LETTERED
    assert len(sink.at("/good")) == 1
    assert len(sink.at("/bad")) == 2
    [dead] = await store.dlq.recent(event=f"{unique}-s")
    assert dead.service == bad.name

    handle = temporal.get_workflow_handle(result.workflow_id)
    description = await handle.describe()
    assert description.status is WorkflowExecutionStatus.COMPLETED
    attributes = description.typed_search_attributes
    assert attributes.get(HUB_OUTCOME) == "partial"
    assert sorted(attributes.get(HUB_SERVICES)) == sorted([good.name, bad.name])


async def test_workflows_are_found_by_search_attributes(
    hub, temporal, sink, make_service, make_rule, unique
):
    service = await make_service()
    await make_rule(f"{unique}.visible", service)
    result = await hub.emit(f"{unique}.visible", {}, event_id=f"{unique}-v", wait=True)

    query = f"HubEventName = '{unique}.visible' AND HubOutcome = 'delivered'"
    for _ in range(50):
        found = [w.id async for w in temporal.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.2)
    assert found == [result.workflow_id]
    by_id = [w.id async for w in temporal.list_workflows(f"HubEventId = '{unique}-v'")]
    assert by_id == [result.workflow_id]


async def test_a_nul_in_a_response_is_cleaned_before_it_is_stored(
    hub, store, sink, make_service, make_rule, unique
):
    # PostgreSQL refuses NUL in text: the excerpt and the error are cleaned first, so the log
    # row and the DLQ row are written and the workflow ends.
    service = await make_service(max_attempts=1)
    sink.script("/nul", Reply(500, body=b"bad\x00byte"))
    await make_rule(f"{unique}.nul", service, endpoint="/nul")
    result = await asyncio.wait_for(
        hub.emit(f"{unique}.nul", event_id=f"{unique}-n", wait=True), 30
    )

    assert result.result.outcome is Outcome.DEAD_LETTERED
    [delivery] = result.result.deliveries
    assert delivery.status is DeliveryStatus.DEAD_LETTERED and delivery.dlq_id is not None
    [dead] = await store.dlq.recent(event=f"{unique}-n")
    assert dead.error == "HTTP 500 Internal Server Error: badbyte"
    [row] = await store.log.recent(event_id=f"{unique}-n")
    assert (row.status, row.attempt, row.response_excerpt) == ("failed", 1, "badbyte")


async def test_replaying_a_missing_dlq_row_fails_at_once(temporal, settings, worker):
    # A row that does not exist will not appear with a retry: no retries, an explained end.
    outcome = await asyncio.wait_for(
        temporal.execute_workflow(
            ReplayDeadLetterWorkflow.run,
            ReplayInput(dlq_id=2**62, replay=1),
            id=f"dlq-{2**62}-replay-test-{RUN}",
            task_queue=settings.task_queue,
        ),
        20,
    )
    assert not outcome.delivered
    assert outcome.error == f"no DLQ entry with id {2**62}"


async def test_a_receivers_cookie_is_never_sent_on(hub, sink, make_service, make_rule, unique):
    """The worker's HTTP client is shared: a Set-Cookie kept in it would ride on every later
    delivery to the host, to the same service or another one behind it."""
    first, second = await make_service(), await make_service()
    await make_rule(f"{unique}.a", first, endpoint="/sets")
    await make_rule(f"{unique}.b", second, endpoint="/later")
    cookie = f"session={unique}; Path=/; Max-Age=3600"
    sink.script("/sets", Reply(200, headers={"set-cookie": cookie}))

    for name in ("a", "b", "a"):
        result = await hub.emit(f"{unique}.{name}", {}, wait=True)
        assert result.result.outcome is Outcome.DELIVERED

    received = sink.at("/sets") + sink.at("/later")
    assert len(received) == 3
    assert [r.headers.get("cookie") for r in received] == [None, None, None]
