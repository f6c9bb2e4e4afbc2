"""The HTTP API against the real app, worker, Temporal dev server, PostgreSQL and HTTP sinks."""

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from hub import __version__
from hub.api import create_app, serve
from hub.api.middleware import ENVELOPE_MARGIN
from hub.config import Settings
from hub.core.models import CircuitState, DispatchResult, Outcome, ReplayOutcome
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import free_port
from hub.runtime.metrics import DatabaseGauges
from hub.secrets import SecretBox
from hub.store import Store
from hub.store.metrics import CircuitGauge, GaugeReading
from workflows.dispatch import DispatchEventWorkflow
from workflows.replay import ReplayDeadLetterWorkflow

API_TOKEN = "api-TOKEN-0123456789"
SERVICE_TOKEN = "svc-TOKEN-never-shown-4567"
INBOUND_TOKEN = "inbound-TOKEN-never-shown-89"
URL_PASSWORD = "url-PASSWORD-never-shown"
SECRETS = (SERVICE_TOKEN, INBOUND_TOKEN, URL_PASSWORD)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="session")
def api_settings(settings):
    return settings.model_copy(update={"api_token": SecretStr(API_TOKEN)})


@pytest.fixture(scope="session")
async def app(api_settings, store, temporal, worker):
    """The app on the session's store and Temporal client, its lifespan running."""
    app = create_app(api_settings, store=store, temporal=temporal)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, *, headers=AUTH, bodies=None, raise_errors=True):
    hooks = {}
    if bodies is not None:

        async def record(response: httpx.Response) -> None:
            await response.aread()
            bodies.append(response.text)

        hooks["response"] = [record]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors),
        base_url="http://hub",
        headers=headers,
        event_hooks=hooks,
    )


@pytest.fixture
async def api(app):
    """An authenticated client; after the test, no response may have held a secret."""
    bodies: list[str] = []
    async with client_for(app, bodies=bodies) as client:
        yield client
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body


async def dispatch_result(temporal: Client, workflow_id: str) -> DispatchResult:
    return await temporal.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id).result()


async def add_rule(api: httpx.AsyncClient, event: str, service: str, **fields) -> dict:
    response = await api.post("/rules", json={"event": event, "service": service, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def locs(response: httpx.Response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


# application and authentication


async def test_create_app_refuses_to_start_without_a_token(settings, store, temporal):
    assert settings.api_token is None
    with pytest.raises(RuntimeError, match="HUB_API_TOKEN is not set"):
        create_app(settings)
    with pytest.raises(RuntimeError, match="--insecure-no-auth"):
        create_app(settings.model_copy(update={"api_token": SecretStr("")}))
    with pytest.raises(RuntimeError, match="HUB_API_TOKEN is not set"):
        serve(settings, host="127.0.0.1", port=free_port())

    open_app = create_app(settings, insecure_no_auth=True, store=store, temporal=temporal)
    async with open_app.router.lifespan_context(open_app), client_for(open_app, headers={}) as api:
        assert (await api.get("/services")).status_code == 200


async def test_metrics_are_public_only_when_configured(api_settings, store, temporal):
    public = create_app(
        api_settings.model_copy(update={"metrics_public": True}), store=store, temporal=temporal
    )
    async with public.router.lifespan_context(public), client_for(public, headers={}) as api:
        response = await api.get("/metrics")
        assert response.status_code == 200
        assert "hub_dlq_depth" in response.text
        assert (await api.get("/services")).status_code == 401


async def test_create_app_refuses_a_short_token(settings):
    with pytest.raises(RuntimeError, match="HUB_API_TOKEN is too short: use at least 16"):
        create_app(settings.model_copy(update={"api_token": SecretStr("x" * 15)}))


async def test_every_route_but_health_and_docs_needs_the_api_token(app):
    async with client_for(app, headers={}) as anonymous:
        for method, path in [
            ("GET", "/services"),
            ("POST", "/events"),
            ("GET", "/rules/1"),
            ("GET", "/dlq"),
            ("POST", "/dlq/replay"),
            ("GET", "/logs"),
            ("GET", "/circuits"),
            ("POST", "/circuits/x/reset"),
            ("GET", "/metrics"),
        ]:
            response = await anonymous.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json() == {
                "detail": "missing or wrong API token: send Authorization: Bearer <HUB_API_TOKEN>"
            }
            assert response.headers["www-authenticate"] == "Bearer"
        for headers in (
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {API_TOKEN}"},
            {"Authorization": f"Bearer {API_TOKEN}x"},
            {"Authorization": "Bearer tökén".encode()},
            {"X-API-Key": API_TOKEN},
        ):
            assert (await anonymous.get("/services", headers=headers)).status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200
        # Open by choice (README, Security): they describe the API, not this installation.
        assert (await anonymous.get("/docs")).status_code == 200
        assert (await anonymous.get("/redoc")).status_code == 200

        spec = (await anonymous.get("/openapi.json")).json()
    assert spec["info"] == {
        "title": "temporal-hub",
        "version": __version__,
        "description": spec["info"]["description"],
    }
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert spec["paths"]["/services"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


async def test_unexpected_errors_are_500_without_details(api_settings, store, temporal):
    app = create_app(api_settings, store=store, temporal=temporal)

    async def boom() -> None:
        raise RuntimeError(f"secret detail {SERVICE_TOKEN}")

    app.add_api_route("/boom", boom)
    async with app.router.lifespan_context(app), client_for(app, raise_errors=False) as api:
        response = await api.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


# events


async def test_post_event_starts_a_workflow_that_delivers(
    api, sink, make_service, temporal, unique
):
    service = await make_service()
    await add_rule(api, f"{unique}.paid", service.name, endpoint="/paid", template='{"n": {{n}}}')

    response = await api.post(
        "/events",
        json={
            "name": f"{unique}.paid",
            "data": {"n": 7},
            "id": f"{unique}-1",
            "occurred_at": "2024-05-01T10:00:00+02:00",
        },
    )
    assert response.status_code == 202
    body = response.json()
    assert body == {
        "event_id": f"{unique}-1",
        "workflow_id": f"event-{unique}-1",
        "matched": True,
        "duplicate": False,
        "services": [service.name],
        "detail": "started",
    }
    result = await dispatch_result(temporal, body["workflow_id"])
    assert result.outcome is Outcome.DELIVERED
    [request] = sink.at("/paid")
    assert request.body == b'{"n": 7}'

    again = await api.post("/events", json={"name": f"{unique}.paid", "id": f"{unique}-1"})
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["workflow_id"] == f"event-{unique}-1"
    assert "already submitted" in again.json()["detail"]

    generated = await api.post("/events", json={"name": f"{unique}.paid", "data": {"n": 8}})
    assert generated.status_code == 202
    await dispatch_result(temporal, generated.json()["workflow_id"])
    assert len(sink.at("/paid")) == 2


async def test_post_event_that_matches_nothing_starts_nothing(api, unique):
    response = await api.post("/events", json={"name": f"{unique}.nobody", "id": f"{unique}-n"})
    assert response.status_code == 200
    body = response.json()
    assert (body["matched"], body["workflow_id"], body["duplicate"]) == (False, None, False)
    assert "no enabled rule matches" in body["detail"]


async def test_post_event_validates_its_body(api):
    cases = [
        ({"data": {}}, ["body", "name"]),
        ({"name": "x", "data": [1, 2]}, ["body", "data"]),
        ({"name": "x", "data": "text"}, ["body", "data"]),
        ({"name": "x", "id": "has space"}, ["body", "id"]),
        ({"name": "x", "id": ""}, ["body", "id"]),
        ({"name": "x", "id": "a" * 201}, ["body", "id"]),
        ({"name": "has space"}, ["body", "name"]),
        ({"name": "wild.*"}, ["body", "name"]),
        ({"name": "x", "occurred_at": "yesterday"}, ["body", "occurred_at"]),
        ({"name": "x", "extra": 1}, ["body", "extra"]),
        ({"name": "x", "data": {"nul": "a\u0000b"}}, ["body", "data"]),
        ({"name": "x", "data": nested(100)}, ["body", "data"]),
    ]
    for body, loc in cases:
        response = await api.post("/events", json=body)
        assert locs(response) == [loc], body
        assert "input" not in response.json()["detail"][0]
    assert locs(await api.post("/events", json=[1])) == [["body"]]
    assert (await api.post("/events", content=b"{not json")).status_code == 422


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_bodies_over_the_limit_are_refused(
    api_settings, store, temporal, make_service, make_rule, unique
):
    await make_rule(f"{unique}.big", await make_service())
    small = api_settings.model_copy(update={"max_event_bytes": 2048})
    limit = 2048 + ENVELOPE_MARGIN  # the body may hold the event plus its envelope
    app = create_app(small, store=store, temporal=temporal)
    async with app.router.lifespan_context(app), client_for(app) as api:
        response = await api.post("/events", json={"name": "x", "data": {"s": "a" * limit}})
        assert response.status_code == 413
        assert f"limit is {limit} bytes" in response.json()["detail"]

        async def chunks():  # no Content-Length: the bytes received are counted
            yield b'{"name": "x", "data": {"s": "'
            for _ in range(2):
                yield b"a" * (64 * 1024)
            yield b'"}}'

        streamed = await api.post(
            "/events", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        async with client_for(app, headers={}) as anonymous:
            hook = await anonymous.post("/webhooks/x", content=b"[" * (limit + 1))
        assert hook.status_code == 413

        # Under the body limit, over the event limit: refused by the event's own size.
        event = {"name": f"{unique}.big", "id": f"{unique}-big", "data": {"s": "a" * 4000}}
        response = await api.post("/events", json=event)
        assert response.status_code == 413
        assert response.json()["detail"].endswith(
            "over the limit of 2048 bytes (HUB_MAX_EVENT_BYTES)"
        )
        with pytest.raises(RPCError) as missing:  # nothing was started
            await temporal.get_workflow_handle(f"event-{unique}-big").describe()
        assert missing.value.status is RPCStatusCode.NOT_FOUND
        fits = {"name": "x", "data": {"s": "a" * 1500}}
        assert (await api.post("/events", json=fits)).status_code == 200  # no rule matches "x"


# services and rules


async def test_service_crud(api, sink, unique):
    name = f"{unique}-crud"
    created = await api.post(
        "/services",
        json={
            "name": name,
            "base_url": sink.url,
            "auth_type": "bearer",
            "token": SERVICE_TOKEN,
            "inbound_token": INBOUND_TOKEN,
            "timeout": 2,
        },
    )
    assert created.status_code == 201, created.text
    service = created.json()
    assert service["has_token"] is True and service["has_inbound_token"] is True
    assert not {"token", "inbound_token", "secret_url"} & set(service)
    assert service["timeout"] == 2

    assert [s for s in (await api.get("/services")).json() if s["name"] == name] == [service]
    detail = (await api.get(f"/services/{name}")).json()
    assert detail == service | {"held": 0, "held_by_reason": detail["held_by_reason"]}
    assert set(detail["held_by_reason"].values()) == {0}

    patched = await api.patch(f"/services/{name}", json={"timeout": 3, "inbound_token": None})
    assert patched.status_code == 200
    assert patched.json()["timeout"] == 3
    assert patched.json()["has_inbound_token"] is False
    assert patched.json()["has_token"] is True

    refused = await api.patch(f"/services/{name}", json={"token": None})
    assert refused.status_code == 422
    assert "needs a token" in refused.json()["detail"][0]["msg"]
    assert locs(await api.patch(f"/services/{name}", json={"name": "other"})) == [["body", "name"]]
    assert locs(await api.patch(f"/services/{name}", json={"max_attempts": 9})) == [
        ["body", "max_attempts"]
    ]
    assert (await api.patch(f"/services/{unique}-none", json={})).status_code == 404

    duplicate = await api.post("/services", json={"name": name, "base_url": sink.url})
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.json()["detail"]

    await add_rule(api, f"{unique}.x", name)
    in_use = await api.delete(f"/services/{name}")
    assert in_use.status_code == 409
    assert "1 rule(s)" in in_use.json()["detail"]
    assert (await api.delete(f"/services/{name}", params={"with_rules": "true"})).status_code == 204
    assert (await api.get(f"/services/{name}")).status_code == 404
    assert (await api.delete(f"/services/{name}")).status_code == 404
    assert (await api.get("/rules", params={"service": name})).json() == []


async def test_service_input_errors_never_echo_the_token(api, unique):
    invalid = await api.post(
        "/services",
        json={
            "name": f"{unique}-bad",
            "base_url": "ftp://nowhere",
            "auth_type": "bearer",
            "token": SERVICE_TOKEN,
        },
    )
    assert invalid.status_code == 422
    assert "invalid URL" in invalid.json()["detail"][0]["msg"]
    missing = await api.post("/services", json={"name": f"{unique}-bad", "auth_type": "bearer"})
    assert {tuple(loc) for loc in locs(missing)} == {("body", "base_url")}
    assert locs(await api.post("/services", json={"name": "Bad Name", "base_url": "http://x"})) == [
        ["body", "name"]
    ]
    assert locs(await api.get("/services/Bad%20Name")) == [["path", "name"]]


async def test_url_passwords_are_masked(api, unique):
    url = f"amqp://hub:{URL_PASSWORD}@127.0.0.1:5672/"
    created = await api.post(
        "/services", json={"name": f"{unique}-mq", "type": "amqp", "base_url": url}
    )
    assert created.status_code == 201
    assert created.json()["base_url"] == "amqp://hub:***@127.0.0.1:5672/"


async def test_rule_crud(api, make_service, unique):
    service = await make_service()
    rule = await add_rule(
        api, f"{unique}.*", service.name, method="put", endpoint="/x", template='{"a": {{a}}}'
    )
    assert (rule["method"], rule["enabled"]) == ("PUT", True)
    assert (await api.get(f"/rules/{rule['id']}")).json() == rule | {"lane_depth": 0}
    assert [
        r["id"] for r in (await api.get("/rules", params={"service": service.name})).json()
    ] == [rule["id"]]

    patched = await api.patch(f"/rules/{rule['id']}", json={"endpoint": "/y", "enabled": False})
    assert patched.status_code == 200
    assert (patched.json()["endpoint"], patched.json()["enabled"]) == ("/y", False)

    bad_template = await api.patch(f"/rules/{rule['id']}", json={"template": '{"a": {{a}}'})
    assert bad_template.status_code == 422
    assert "JSON" in bad_template.json()["detail"][0]["msg"]
    missing_service = await api.patch(f"/rules/{rule['id']}", json={"service": f"{unique}-none"})
    assert locs(missing_service) == [["body", "service"]]
    assert "no service named" in missing_service.json()["detail"][0]["msg"]
    assert (await api.patch("/rules/999999999", json={})).status_code == 404
    assert locs(await api.get("/rules/0")) == [["path", "rule_id"]]
    assert locs(await api.get("/rules/abc")) == [["path", "rule_id"]]
    assert locs(await api.get(f"/rules/{2**63}")) == [["path", "rule_id"]]

    unknown = await api.post("/rules", json={"event": "e", "service": f"{unique}-none"})
    assert locs(unknown) == [["body", "service"]]
    get_array = await api.post(
        "/rules", json={"event": "e", "service": service.name, "method": "GET", "template": "[1]"}
    )
    assert get_array.status_code == 422
    assert locs(await api.get("/rules", params={"service": "Not A Name"})) == [["query", "service"]]

    assert (await api.delete(f"/rules/{rule['id']}")).status_code == 204
    assert (await api.get(f"/rules/{rule['id']}")).status_code == 404
    assert (await api.delete(f"/rules/{rule['id']}")).status_code == 404


async def test_tokens_are_used_but_never_shown(api, sink, store, temporal, unique):
    name = f"{unique}-tok"
    created = await api.post(
        "/services",
        json={"name": name, "base_url": sink.url, "auth_type": "apikey", "token": SERVICE_TOKEN},
    )
    assert created.status_code == 201
    await add_rule(api, f"{unique}.t", name, endpoint="/t")
    response = await api.post("/events", json={"name": f"{unique}.t", "id": f"{unique}-t"})
    assert (await dispatch_result(temporal, response.json()["workflow_id"])).outcome is (
        Outcome.DELIVERED
    )
    [request] = sink.at("/t")
    assert request.headers["x-api-key"] == SERVICE_TOKEN

    logs = await api.get("/logs", params={"service": name})
    assert [row["status"] for row in logs.json()["items"]] == ["ok"]
    assert SERVICE_TOKEN not in logs.text
    for row in await store.log.recent(service=name):
        assert SERVICE_TOKEN not in row.model_dump_json()
    for path in ("/services", f"/services/{name}", "/circuits", "/metrics"):
        assert SERVICE_TOKEN not in (await api.get(path)).text


async def test_without_a_secret_key_tokens_are_refused_not_500(
    api_settings, store, temporal, make_service, unique
):
    """Sealing needs the key (400 for the request); opening it for a webhook is 503."""
    webhook_service = await make_service(inbound_token=INBOUND_TOKEN)
    keyless = Store(store.pool, SecretBox(None), dsn=store.dsn)
    app = create_app(api_settings, store=keyless, temporal=temporal)
    async with app.router.lifespan_context(app), client_for(app) as api:
        refused = await api.post(
            "/services",
            json={
                "name": f"{unique}-k",
                "base_url": "http://x",
                "auth_type": "bearer",
                "token": "t",
            },
        )
        assert refused.status_code == 400
        assert refused.json()["detail"].startswith("no secret key")
        assert (await api.get(f"/services/{unique}-k")).status_code == 404
        plain = await api.post("/services", json={"name": f"{unique}-k", "base_url": "http://x"})
        assert plain.status_code == 201

        hook = await api.post(
            f"/webhooks/{webhook_service.name}",
            json={},
            headers={"Authorization": f"Bearer {INBOUND_TOKEN}"},
        )
        assert hook.status_code == 503
        assert hook.json()["detail"].startswith("no secret key")


# webhooks


async def test_webhook_authentication_and_errors(app, make_service, unique):
    service = await make_service(inbound_token=INBOUND_TOKEN)
    no_inbound = await make_service()
    disabled = await make_service(inbound_token=INBOUND_TOKEN, enabled=False)
    path = f"/webhooks/{service.name}"
    bearer = {"Authorization": f"Bearer {INBOUND_TOKEN}"}
    bodies: list[str] = []
    async with client_for(app, headers={}, bodies=bodies) as client:
        cases = [
            (client.post(path, json={}), 401),
            (client.post(path, json={}, headers={"Authorization": "Bearer wrong"}), 403),
            (client.post(path, json={}, headers={"X-API-Key": "wrong"}), 403),
            (client.post(path, json={}, headers=AUTH), 403),  # the API token is not it
            (client.post(f"/webhooks/{unique}-none", json={}, headers=bearer), 404),
            (client.post("/webhooks/Not%20A%20Name", json={}, headers=bearer), 404),
            (client.post(f"/webhooks/{no_inbound.name}", json={}, headers=bearer), 403),
            (client.post(f"/webhooks/{disabled.name}", json={}, headers=bearer), 403),
            (client.get(path, headers=bearer), 405),
            (client.post(path, json=[1, 2], headers=bearer), 400),
            (client.post(path, json="text", headers=bearer), 400),
            (client.post(path, content=b"{oops", headers=bearer), 400),
            (client.post(path, content=b"", headers=bearer), 400),
            (client.post(path, content='{"a": "\u00e9"}'.encode("latin-1"), headers=bearer), 400),
            (client.post(path, json={"a": "\u0000"}, headers=bearer), 400),
            (client.post(path, json=nested(100), headers=bearer), 400),
        ]
        for request, expected in cases:
            response = await request
            assert response.status_code == expected, (response.request.url, response.text)
            assert "detail" in response.json()
    assert "has no inbound token" in bodies[6]
    assert "is disabled" in bodies[7]
    for body in bodies:
        assert INBOUND_TOKEN not in body


async def test_webhook_is_logged_and_emitted_as_an_event(app, api, sink, make_service, temporal):
    service = await make_service(inbound_token=INBOUND_TOKEN)
    await add_rule(api, f"webhook.{service.name}", service.name, endpoint="/hook")
    path = f"/webhooks/{service.name}"
    async with client_for(app, headers={}) as client:
        by_bearer = await client.post(
            path, json={"order": 1}, headers={"Authorization": f"Bearer {INBOUND_TOKEN}"}
        )
        by_key = await client.post(path, json={"order": 2}, headers={"X-API-Key": INBOUND_TOKEN})
    for response in (by_bearer, by_key):
        assert response.status_code == 202, response.text
        assert response.json()["services"] == [service.name]
        result = await dispatch_result(temporal, response.json()["workflow_id"])
        assert result.outcome is Outcome.DELIVERED
    received = [json.loads(r.body) for r in sink.at("/hook")]
    assert sorted(r["data"]["order"] for r in received) == [1, 2]
    assert {r["name"] for r in received} == {f"webhook.{service.name}"}

    inbound = (await api.get("/logs", params={"service": service.name, "direction": "in"})).json()
    assert [
        (row["method"], row["target"], row["status"], row["event_name"], row["response_excerpt"])
        for row in inbound["items"]
    ] == [
        ("WEBHOOK", path, "ok", f"webhook.{service.name}", '{"order":2}'),
        ("WEBHOOK", path, "ok", f"webhook.{service.name}", '{"order":1}'),
    ]
    assert {row["event_id"] for row in inbound["items"]} == {
        by_bearer.json()["event_id"],
        by_key.json()["event_id"],
    }


async def test_webhook_without_a_rule_is_logged_and_says_so(app, api, make_service):
    service = await make_service(inbound_token=INBOUND_TOKEN)
    async with client_for(app, headers={"X-API-Key": INBOUND_TOKEN}) as client:
        response = await client.post(f"/webhooks/{service.name}", json={"a": 1})
    assert response.status_code == 200
    assert (response.json()["matched"], response.json()["workflow_id"]) == (False, None)
    [row] = (await api.get("/logs", params={"service": service.name})).json()["items"]
    assert (row["direction"], row["event_id"]) == ("in", response.json()["event_id"])


# dead-letter queue


async def test_dlq_replay_resolves_only_when_delivered(api, sink, make_service, temporal, unique):
    service = await make_service(max_attempts=1)
    sink.script("/dlq", 500, 503)  # the delivery fails, then the first replay; then 200
    await add_rule(api, f"{unique}.d", service.name, endpoint="/dlq", template='{"v": "{{v}}"}')
    emitted = await api.post("/events", json={"name": f"{unique}.d", "data": {"v": 'é"x'}})
    result = await dispatch_result(temporal, emitted.json()["workflow_id"])
    assert result.outcome is Outcome.DEAD_LETTERED

    [row] = (await api.get("/dlq", params={"service": service.name})).json()
    assert row["payload"] == '{"v": "é\\"x"}'
    assert "HTTP 500" in row["error"]
    assert row["replay_count"] == 0 and row["resolved_at"] is None
    assert (await api.get("/dlq", params={"event": f"{unique}.d"})).json() == [row]

    failed = await api.post(f"/dlq/{row['id']}/replay", params={"wait": "true"})
    assert failed.status_code == 200
    assert failed.json()["delivered"] is False
    after_failure = (await api.get(f"/dlq/{row['id']}")).json()
    assert after_failure["resolved_at"] is None
    assert after_failure["replay_count"] == 1
    assert "HTTP 503" in after_failure["error"]

    replayed = await api.post(f"/dlq/{row['id']}/replay", params={"wait": "true"})
    assert replayed.status_code == 200
    outcome = ReplayOutcome.model_validate(replayed.json())
    assert (outcome.delivered, outcome.replay, outcome.dlq_id) == (True, 2, row["id"])
    assert sink.at("/dlq")[-1].body == row["payload"].encode()
    resolved = (await api.get(f"/dlq/{row['id']}")).json()
    assert resolved["resolved_at"] is not None
    assert resolved["replay_count"] == 2
    assert (await api.get("/dlq", params={"service": service.name})).json() == []
    listed = await api.get("/dlq", params={"service": service.name, "include_resolved": "true"})
    assert [r["id"] for r in listed.json()] == [row["id"]]

    again = await api.post(f"/dlq/{row['id']}/replay")
    assert again.status_code == 409
    assert "already resolved" in again.json()["detail"]
    assert (await api.post("/dlq/999999999/replay")).status_code == 404
    assert (await api.get("/dlq/999999999")).status_code == 404


async def test_dlq_bulk_replay_single_start_and_delete(api, sink, make_service, temporal, unique):
    service = await make_service(max_attempts=1)
    sink.script("/bulk", 500, 500, 500, 500)
    await add_rule(api, f"{unique}.b", service.name, endpoint="/bulk")
    for n in range(4):
        emitted = await api.post("/events", json={"name": f"{unique}.b", "data": {"n": n}})
        await dispatch_result(temporal, emitted.json()["workflow_id"])
    rows = (await api.get("/dlq", params={"service": service.name})).json()
    assert len(rows) == 4
    oldest_first = sorted(r["id"] for r in rows)

    bulk = await api.post("/dlq/replay", json={"service": service.name, "limit": 2, "wait": True})
    assert bulk.status_code == 200
    assert bulk.json() == {"requested": 2, "started": 2, "delivered": 2, "failed": 0, "skipped": 0}
    left = sorted(r["id"] for r in (await api.get("/dlq", params={"service": service.name})).json())
    assert left == oldest_first[2:]

    started = await api.post(f"/dlq/{left[0]}/replay")
    assert started.status_code == 202
    assert started.json() == {"dlq_id": left[0], "workflow_id": f"dlq-{left[0]}-replay-1"}
    handle = temporal.get_workflow_handle_for(
        ReplayDeadLetterWorkflow.run, f"dlq-{left[0]}-replay-1"
    )
    assert (await handle.result()).delivered is True

    nothing = await api.post("/dlq/replay", json={"service": f"{unique}-none"})
    assert nothing.status_code == 202
    assert nothing.json()["requested"] == 0
    assert locs(await api.post("/dlq/replay", json={"limit": 10001})) == [["body", "limit"]]
    assert locs(await api.post("/dlq/replay")) == [["body"]]

    assert (await api.delete(f"/dlq/{left[1]}")).status_code == 204
    assert (await api.get(f"/dlq/{left[1]}")).status_code == 404
    assert (await api.delete(f"/dlq/{left[1]}")).status_code == 404


# logs and circuits


async def test_logs_filters_and_pagination(api, make_service, temporal, unique):
    service = await make_service()
    await add_rule(api, f"{unique}.l", service.name)
    ids = [f"{unique}-l{n}" for n in range(3)]
    for event_id in ids:
        emitted = await api.post("/events", json={"name": f"{unique}.l", "id": event_id})
        await dispatch_result(temporal, emitted.json()["workflow_id"])

    first = (await api.get("/logs", params={"service": service.name, "limit": 2})).json()
    assert [row["event_id"] for row in first["items"]] == [ids[2], ids[1]]
    assert first["next_before"] == first["items"][-1]["id"]
    second = (
        await api.get(
            "/logs", params={"service": service.name, "limit": 2, "before": first["next_before"]}
        )
    ).json()
    assert [row["event_id"] for row in second["items"]] == [ids[0]]
    assert second["next_before"] is None

    by_event = (await api.get("/logs", params={"event": ids[1]})).json()["items"]
    assert [(r["event_id"], r["status"], r["direction"]) for r in by_event] == [
        (ids[1], "ok", "out")
    ]
    filtered = {"service": service.name, "status": "ok", "direction": "out"}
    assert len((await api.get("/logs", params=filtered)).json()["items"]) == 3
    assert (await api.get("/logs", params={**filtered, "status": "failed"})).json()["items"] == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await api.get("/logs", params={"service": service.name, "since": future})).json() == {
        "items": [],
        "next_before": None,
    }
    naive_past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    since = await api.get("/logs", params={"service": service.name, "since": naive_past})
    assert len(since.json()["items"]) == 3

    for params, loc in [
        ({"status": "bad"}, "status"),
        ({"direction": "sideways"}, "direction"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"before": 0}, "before"),
        ({"since": "not a time"}, "since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"event": "has space"}, "event"),
    ]:
        assert locs(await api.get("/logs", params=params)) == [["query", loc]], params


async def test_circuits_list_and_reset(api, sink, make_service, temporal, unique):
    service = await make_service(max_attempts=1, cb_threshold=1, cb_cooldown=120)
    sink.script("/cb", then=503)
    await add_rule(api, f"{unique}.cb", service.name, endpoint="/cb")
    emitted = await api.post("/events", json={"name": f"{unique}.cb"})
    assert (await dispatch_result(temporal, emitted.json()["workflow_id"])).outcome is (
        Outcome.DEAD_LETTERED
    )

    [circuit] = [c for c in (await api.get("/circuits")).json() if c["service"] == service.name]
    assert (circuit["state"], circuit["failures"]) == ("open", 1)
    assert 100 < circuit["retry_in"] <= 120

    reset = await api.post(f"/circuits/{service.name}/reset")
    assert reset.status_code == 200
    assert (reset.json()["state"], reset.json()["failures"]) == ("closed", 0)
    assert (await api.post(f"/circuits/{unique}-none/reset")).status_code == 404


# health and metrics


async def test_healthz(app, api_settings, store):
    async with client_for(app, headers={}) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}

    # A new Settings: resolved_temporal_address is cached, and model_copy would keep it.
    elsewhere = Settings(
        temporal_address=f"127.0.0.1:{free_port()}", secret_key=api_settings.secret_key
    )
    nowhere = await connect_temporal(elsewhere, lazy=True)
    down = create_app(api_settings, store=store, temporal=nowhere)
    async with down.router.lifespan_context(down), client_for(down, headers={}) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "ok", "temporal": "unavailable"}


METRIC_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>([a-zA-Z_]\w*="([^"\\\n]|\\.)*",?)*)\})?'
    r" (?P<value>\S+)$"
)


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) \w+ .+$", line), line
            continue
        match = METRIC_LINE.match(line)
        assert match, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def received(samples: dict, source: str, outcome: str) -> float:
    return samples[
        ("hub_events_received_total", frozenset({("source", source), ("outcome", outcome)}))
    ]


async def test_metrics_in_prometheus_text_format(app, api, sink, make_service, temporal, unique):
    """The API's own counters (exact deltas), the database gauges, Temporal's runtime."""
    async with client_for(app, headers=AUTH) as client:
        before = parse_metrics((await client.get("/metrics")).text)
    service = await make_service(max_attempts=1)
    sink.script("/m", 500)
    await add_rule(api, f"{unique}.m", service.name, endpoint="/m")
    for event_id in (f"{unique}-m1", f"{unique}-m2"):
        emitted = await api.post("/events", json={"name": f"{unique}.m", "id": event_id})
        await dispatch_result(temporal, emitted.json()["workflow_id"])
    await api.post("/events", json={"name": f"{unique}.m", "id": f"{unique}-m1"})
    await api.post("/events", json={"name": f"{unique}.nothing"})
    hooked = await make_service(inbound_token=INBOUND_TOKEN)
    async with client_for(app, headers={"X-API-Key": INBOUND_TOKEN}) as caller:
        webhook = await caller.post(f"/webhooks/{hooked.name}", json={"a": 1})
    assert webhook.status_code == 200  # no rule for webhook.<service>: nothing started

    async with client_for(app, headers=AUTH) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse_metrics(response.text)
    names = {name for name, _ in samples}
    assert {
        "hub_events_received_total",
        "hub_store_up",
        "hub_dlq_depth",
        "hub_circuit_state",
        "hub_circuit_failures",
        "temporal_request",  # the API's Temporal client, from its runtime's exporter
    } <= names
    assert not any(name.endswith("_created") for name in names)
    delta = {
        outcome: received(samples, "api", outcome) - received(before, "api", outcome)
        for outcome in ("started", "duplicate", "no_match")
    }
    assert delta == {"started": 2, "duplicate": 1, "no_match": 1}
    delta = {
        outcome: received(samples, "webhook", outcome) - received(before, "webhook", outcome)
        for outcome in ("started", "duplicate", "no_match")
    }
    assert delta == {"started": 0, "duplicate": 0, "no_match": 1}  # all present from the start
    assert samples[("hub_store_up", frozenset())] == 1

    me = ("service", service.name)
    assert samples[("hub_dlq_depth", frozenset({me}))] == 1
    states = {
        state: samples[("hub_circuit_state", frozenset({me, ("state", state)}))]
        for state in ("closed", "open", "half_open")
    }
    assert states == {"closed": 1, "open": 0, "half_open": 0}
    assert samples[("hub_circuit_failures", frozenset({me}))] == 0


def test_metrics_escape_label_values():
    name = 'a"b\\c\nd'
    reading = GaugeReading(
        dlq_depth={name: 2}, circuits=[CircuitGauge(name, CircuitState.HALF_OPEN, 3)]
    )
    text = generate_latest(DatabaseGauges(reading)).decode()
    assert 'hub_circuit_state{service="a\\"b\\\\c\\nd",state="half_open"} 1.0' in text
    assert 'hub_dlq_depth{service="a\\"b\\\\c\\nd"} 2.0' in text
    parsed = parse_metrics(text)
    assert parsed[("hub_circuit_failures", frozenset({("service", 'a\\"b\\\\c\\nd')}))] == 3


async def test_values_the_database_cannot_store_are_refused_not_500(api, make_service, unique):
    """PostgreSQL refuses NUL in text: the models refuse it first, with the field's name."""
    service = await make_service()
    for path, body, field in [
        ("/rules", {"event": "a\u0000b", "service": service.name}, "event"),
        ("/services", {"name": f"{unique}-nul", "base_url": "http://a\u0000b"}, "base_url"),
        ("/events", {"name": "x", "data": {"k": "a\u0000b"}}, "data"),
    ]:
        response = await api.post(path, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][:2] == ["body", field]
