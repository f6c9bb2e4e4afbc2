"""Delivery control as operators see it: the CLI, the API and the console show and change
priority, weight, rate, max hold, order key and pause; bad values change nothing; held and
lane counts show, or read "unknown" when Temporal is unreachable."""

import asyncio
import html
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.core.control import HoldReason
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import free_port
from tests.cli_runner import assert_one_line_error
from tests.console_helpers import VIEWER_TOKEN, client_of, console_app, signed_in

API_TOKEN = "control-API-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
NO_HOLDS = {reason.value: 0 for reason in HoldReason}


def dead_temporal_env() -> dict[str, str]:
    """A Temporal address nothing listens on."""
    return {"HUB_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}


@pytest.fixture(scope="module")
def api_settings(settings):
    return settings.model_copy(
        update={"api_token": SecretStr(API_TOKEN), "viewer_token": SecretStr(VIEWER_TOKEN)}
    )


@pytest.fixture(scope="module")
async def app(api_settings, store, temporal, worker):
    app = create_app(api_settings, store=store, temporal=temporal)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", headers=AUTH) as c:
        yield c


# CLI


async def test_cli_bad_values_give_one_line_and_change_nothing(
    cli, store, make_service, make_rule, unique
):
    service = await make_service()
    rule = await make_rule(f"{unique}.x", service)
    before_service = (await store.services.get(service.name)).model_dump()
    before_rule = (await store.rules.get(rule.id)).model_dump()
    rule_count = len(await store.rules.all())

    cases = [
        (("rule", "update", str(rule.id), "--priority", "0"), "priority"),
        (("rule", "update", str(rule.id), "--priority", "6"), "priority"),
        (("rule", "update", str(rule.id), "--priority", "high"), "priority"),
        (("rule", "update", str(rule.id), "--order-key", "data..user"), "order key"),
        (("rule", "update", str(rule.id), "--order-key", "data.user id"), "order key"),
        (
            ("rule", "add", "--event", "a.b", "--service", service.name, "--priority", "9"),
            "priority",
        ),
        (
            ("rule", "add", "--event", "a.b", "--service", service.name, "--order-key", ".x"),
            "order key",
        ),
        (("service", "update", service.name, "--weight", "0"), "weight"),
        (("service", "update", service.name, "--weight", "-2"), "weight"),
        (("service", "update", service.name, "--weight", "abc"), "weight"),
        (("service", "update", service.name, "--rate", "ten/s"), "invalid rate"),
        (("service", "update", service.name, "--rate", "5/hour"), "invalid rate"),
        (("service", "update", service.name, "--rate", "0/s"), "above 0"),
        (("service", "update", service.name, "--max-hold", "soon"), "invalid duration"),
        (("service", "update", service.name, "--max-hold", "0"), "max_hold"),
    ]
    for args, fragment in cases:
        assert_one_line_error(await cli(*args), fragment)
    refused_add = await cli(
        "service", "add", f"{unique}-new", "--url", "http://127.0.0.1:9", "--weight", "0"
    )
    assert_one_line_error(refused_add, "weight")

    assert (await store.services.get(service.name)).model_dump() == before_service
    assert (await store.rules.get(rule.id)).model_dump() == before_rule
    assert len(await store.rules.all()) == rule_count
    assert f"{unique}-new" not in {s.name for s in await store.services.all()}


async def test_cli_fields_round_trip_and_show_counts(cli, store, sink, unique):
    name = f"{unique}-ctl"
    added = await cli(
        "service",
        "add",
        name,
        "--url",
        sink.url,
        "--weight",
        "2",
        "--rate",
        "10/s",
        "--max-hold",
        "30m",
        "--json",
    )
    assert added.code == 0, added.stderr
    assert (added.json()["weight"], added.json()["rate"], added.json()["max_hold"]) == (
        2,
        "10/s",
        1800,
    )
    shown = (await cli("service", "show", name, "--json")).json()
    assert shown["paused_at"] is None
    assert shown["held"] == 0 and shown["held_by_reason"] == NO_HOLDS
    text = (await cli("service", "show", name)).stdout
    assert "10/s" in text and "30m" in text and "held" in text

    assert (await cli("service", "update", name, "--rate", "none")).code == 0
    assert (await store.services.get(name)).rate is None
    assert (await cli("service", "update", name, "--rate", "30/min", "--weight", "0.5")).code == 0
    service = await store.services.get(name)
    assert (service.rate, service.weight, service.max_hold) == ("30/min", 0.5, 1800)
    [listed] = [s for s in (await cli("service", "list", "--json")).json() if s["name"] == name]
    assert (listed["rate"], listed["held"]) == ("30/min", 0)
    assert "30/min" in (await cli("service", "list")).stdout

    rule = await cli(
        "rule",
        "add",
        "--event",
        f"{unique}.ordered",
        "--service",
        name,
        "--priority",
        "1",
        "--order-key",
        "data.user_id",
        "--json",
    )
    assert rule.code == 0, rule.stderr
    rule_id = str(rule.json()["id"])
    shown_rule = (await cli("rule", "show", rule_id, "--json")).json()
    assert (shown_rule["priority"], shown_rule["order_key"], shown_rule["lane_depth"]) == (
        1,
        "data.user_id",
        0,
    )
    assert "lane_depth" in (await cli("rule", "show", rule_id)).stdout
    assert (await cli("rule", "update", rule_id, "--order-key", "", "--priority", "5")).code == 0
    stored = await store.rules.get(int(rule_id))
    assert (stored.order_key, stored.priority) == (None, 5)
    [row] = [r for r in (await cli("rule", "list", "--json")).json() if r["id"] == int(rule_id)]
    assert (row["priority"], row["order_key"]) == (5, None)


async def test_cli_pause_and_resume(cli, store, make_service):
    service = await make_service()
    paused = await cli("service", "pause", service.name)
    assert paused.code == 0, paused.stderr
    assert "paused service" in paused.stdout
    stored = await store.services.get(service.name)
    assert stored.paused_at is not None
    assert (await cli("service", "show", service.name, "--json")).json()["paused_at"] is not None
    again = await cli("service", "pause", service.name, "--json")
    assert again.json()["paused_at"] == stored.model_dump(mode="json")["paused_at"]

    resumed = await cli("service", "resume", service.name, "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["paused_at"] is None and resumed.json()["woken"] == 0
    assert (await store.services.get(service.name)).paused_at is None
    assert_one_line_error(await cli("service", "pause", "no-such-service"), "no service")


async def test_cli_without_temporal_shows_unknown_and_still_resumes(cli, store, make_service):
    service = await make_service()
    await store.services.set_paused(service.name, True)
    env = dead_temporal_env()

    shown = await cli("service", "show", service.name, env=env)
    assert shown.code == 0, shown.stderr
    assert "unknown" in shown.stdout and "Traceback" not in shown.stderr
    as_json = (await cli("service", "show", service.name, "--json", env=env)).json()
    assert as_json["held"] is None and as_json["held_by_reason"] is None
    listed = await cli("service", "list", "--json", env=env)
    assert [s["held"] for s in listed.json() if s["name"] == service.name] == [None]

    resumed = await cli("service", "resume", service.name, env=env)
    assert resumed.code == 0, resumed.stderr
    assert "own timers" in resumed.stdout
    assert (await store.services.get(service.name)).paused_at is None


# API


async def test_api_fields_round_trip_and_bad_values_are_422(api, store, sink, unique):
    name = f"{unique}-api"
    created = await api.post(
        "/services",
        json={"name": name, "base_url": sink.url, "weight": 3, "rate": "5/s", "max_hold": 600},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["weight"], body["rate"], body["max_hold"], body["paused_at"]) == (
        3,
        "5/s",
        600,
        None,
    )
    detail = (await api.get(f"/services/{name}")).json()
    assert detail["held"] == 0 and detail["held_by_reason"] == NO_HOLDS
    before = (await store.services.get(name)).model_dump()
    for bad in ({"weight": 0}, {"weight": -1}, {"rate": "fast"}, {"max_hold": 0}):
        refused = await api.patch(f"/services/{name}", json=bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"][-1] == next(iter(bad))
    assert "N/s or N/min" in (await api.patch(f"/services/{name}", json={"rate": "x"})).text
    assert (await store.services.get(name)).model_dump() == before
    assert (await api.patch(f"/services/{name}", json={"rate": None})).json()["rate"] is None

    rule = await api.post(
        "/rules",
        json={"event": f"{unique}.e", "service": name, "priority": 2, "order_key": "data.k"},
    )
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    got = (await api.get(f"/rules/{rule_id}")).json()
    assert (got["priority"], got["order_key"], got["lane_depth"]) == (2, "data.k", 0)
    for bad in ({"priority": 0}, {"priority": 6}, {"order_key": "data..k"}, {"order_key": "$x"}):
        assert (await api.patch(f"/rules/{rule_id}", json=bad)).status_code == 422
        assert (
            await api.post("/rules", json={"event": "a", "service": name, **bad})
        ).status_code == 422
    assert (await store.rules.get(rule_id)).order_key == "data.k"
    cleared = await api.patch(f"/rules/{rule_id}", json={"order_key": None})
    assert cleared.json()["order_key"] is None


async def test_api_pause_resume_and_viewer_cannot(app, api, store, make_service):
    service = await make_service()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", headers=VIEWER) as v:
        assert (await v.post(f"/services/{service.name}/pause")).status_code == 403
        assert (await store.services.get(service.name)).paused_at is None
        assert (await v.get(f"/services/{service.name}")).status_code == 200

    paused = await api.post(f"/services/{service.name}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused_at"] is not None
    assert (await store.services.get(service.name)).paused_at is not None
    assert (await api.get(f"/services/{service.name}")).json()["paused_at"] is not None

    resumed = await api.post(f"/services/{service.name}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused_at"] is None and resumed.json()["woken"] == 0
    assert (await store.services.get(service.name)).paused_at is None
    assert (await api.post("/services/no-such/pause")).status_code == 404

    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "post" in paths["/services/{name}/pause"]
    assert "post" in paths["/services/{name}/resume"]


async def test_api_without_temporal_gives_null_counts(api_settings, settings, store, make_service):
    service = await make_service()
    await store.services.set_paused(service.name, True)
    dead = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    temporal = await connect_temporal(dead, lazy=True)
    app = create_app(api_settings, store=store, temporal=temporal)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hub", headers=AUTH) as api,
    ):
        detail = await api.get(f"/services/{service.name}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["held"] is None and detail.json()["held_by_reason"] is None
        resumed = await api.post(f"/services/{service.name}/resume")
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["woken"] is None
    assert (await store.services.get(service.name)).paused_at is None


# Console


async def test_console_shows_and_switches_pause(settings, store, temporal, worker, make_service):
    service = await make_service(weight=2, rate="7/s")
    async with console_app(settings, store, temporal) as app, client_of(app) as client:
        csrf = await signed_in(client)
        page = html.unescape((await client.get("/ui/services")).text)
        assert f"/ui/services/{service.name}/pause" in page and "7/s" in page
        paused = await client.post(f"/ui/services/{service.name}/pause", data={"csrf": csrf})
        assert paused.status_code == 303
        assert (await store.services.get(service.name)).paused_at is not None
        page = html.unescape((await client.get("/ui/services")).text)
        assert f"/ui/services/{service.name}/resume" in page and "paused" in page
        detail = html.unescape((await client.get(f"/ui/services/{service.name}")).text)
        assert 'name="weight"' in detail and 'name="rate"' in detail and "held deliveries" in detail
        resumed = await client.post(f"/ui/services/{service.name}/resume", data={"csrf": csrf})
        assert resumed.status_code == 303
        assert (await store.services.get(service.name)).paused_at is None

        bad = await client.post(
            f"/ui/services/{service.name}",
            data={"csrf": csrf, "base_url": service.base_url, "rate": "lots", "weight": "1"},
        )
        assert bad.status_code == 422 and "N/s or N/min" in html.unescape(bad.text)
        assert (await store.services.get(service.name)).rate == "7/s"

    async with console_app(settings, store, temporal) as app, client_of(app) as client:
        csrf = await signed_in(client, VIEWER_TOKEN)
        refused = await client.post(f"/ui/services/{service.name}/pause", data={"csrf": csrf})
        assert refused.status_code == 403
        assert (await store.services.get(service.name)).paused_at is None


async def test_console_rule_form_has_priority_and_order_key(
    settings, store, temporal, worker, make_service, make_rule, unique
):
    service = await make_service()
    rule = await make_rule(f"{unique}.c", service, priority=4, order_key="data.account")
    async with console_app(settings, store, temporal) as app, client_of(app) as client:
        csrf = await signed_in(client)
        listing = html.unescape((await client.get("/ui/rules")).text)
        assert "data.account" in listing
        form = html.unescape((await client.get(f"/ui/rules/{rule.id}")).text)
        assert 'name="priority"' in form and "(missing)" in form and 'id="lane-depth"' in form
        fields = {"event": rule.event, "service": service.name, "method": "POST"}
        saved = await client.post(
            f"/ui/rules/{rule.id}", data={"csrf": csrf, **fields, "priority": "1"}
        )
        assert saved.status_code == 303, saved.text
        stored = await store.rules.get(rule.id)
        assert (stored.priority, stored.order_key) == (1, None)
        bad = await client.post(
            f"/ui/rules/{rule.id}", data={"csrf": csrf, **fields, "order_key": "a..b"}
        )
        assert bad.status_code == 422
        assert (await store.rules.get(rule.id)).order_key is None


async def test_a_held_delivery_counts_and_resume_wakes_it(
    cli, api, hub, store, sink, make_service, make_rule, unique
):
    service = await make_service()
    await make_rule(f"{unique}.held", service, endpoint="/held")
    assert (await cli("service", "pause", service.name)).code == 0
    await hub.index.refresh(min_version=await store.rules.config_version())
    await hub.emit(f"{unique}.held", {"n": 1})

    async def held() -> dict:
        return (await cli("service", "show", service.name, "--json")).json()

    deadline = asyncio.get_running_loop().time() + 20
    while (shown := await held())["held"] != 1:
        assert asyncio.get_running_loop().time() < deadline, shown
        await asyncio.sleep(0.3)
    assert shown["held_by_reason"] == NO_HOLDS | {"paused": 1}
    assert sink.at("/held") == []
    detail = (await api.get(f"/services/{service.name}")).json()
    assert (detail["held"], detail["held_by_reason"]["paused"]) == (1, 1)
    assert "1" in (await cli("service", "show", service.name)).stdout.splitlines()[-1]

    resumed = await cli("service", "resume", service.name)
    assert resumed.code == 0 and "woke 1 held delivery" in resumed.stdout, resumed
    deadline = asyncio.get_running_loop().time() + 20
    while not sink.at("/held"):
        assert asyncio.get_running_loop().time() < deadline, "not delivered after resume"
        await asyncio.sleep(0.2)
    assert len(sink.at("/held")) == 1
