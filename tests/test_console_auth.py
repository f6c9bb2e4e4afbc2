"""The console's foundation: signing in (admin, viewer), the session cookie (stale, forged,
expired), CSRF and the read-only viewer, signing out, the API's viewer token, the overview
page and its SQL, and what pages may never contain (secrets, other hosts)."""

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.datastructures import FormData

from hub.api import create_app
from hub.console.auth import (
    COOKIE,
    SESSION_TTL,
    WriterDep,
    read_session,
    safe_next,
    sign_session,
)
from hub.console.charts import Series, _nice_max, hbars, time_bars
from hub.console.forms import FORM_ERROR, field_errors, form_dict
from hub.console.rendering import NAV, STATIC_DIR, TEMPLATES_DIR, TemporalLinks
from hub.console.session import ADMIN, VIEWER, Session
from hub.store.activity import ACTIVITY_QUERIES, LATENCY, PER_MINUTE
from tests.console_helpers import (
    ADMIN_TOKEN,
    VIEWER_TOKEN,
    client_of,
    console_app,
    console_settings,
    csrf_in,
    session_csrf,
    signed_in,
)
from tests.sink import Reply

SERVICE_SECRET = "svc-SECRET-never-in-a-page-4242"
UI_URL = "http://temporal-ui.example:8233"
WRITE_PATH = "/ui/test-write"


@pytest.fixture(scope="module")
async def app(settings, store, temporal, worker):
    async with console_app(settings, store, temporal, temporal_ui_url=UI_URL) as app:
        probe = APIRouter()

        @probe.post(WRITE_PATH)
        async def write(session: WriterDep) -> PlainTextResponse:
            return PlainTextResponse(f"written by {session.role}")

        app.include_router(probe)
        yield app


@pytest.fixture
async def client(app):
    async with client_of(app) as client:
        yield client


def key_of(token: str) -> bytes:
    import hashlib
    import hmac

    from hub.console.auth import _KEY_LABEL

    return hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()


def attrs(html: str, name: str) -> list[str]:
    return re.findall(rf'\b{name}="([^"]*)"', html)


# signing in


async def test_the_api_token_signs_in_as_admin_with_a_strict_cookie(client):
    page = await client.get("/ui/login")
    assert page.status_code == 200
    assert '<label for="f-token">Token' in page.text
    assert (
        'type="password"' in page.text and "value=" not in page.text.split('id="f-token"')[1][:80]
    )
    response = await client.post("/ui/login", data={"token": ADMIN_TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    cookie = response.headers["set-cookie"].lower()
    for part in ("hub_session=", "httponly", "samesite=strict", "path=/ui", "max-age=28800"):
        assert part in cookie, cookie
    assert "secure" not in cookie  # plain http here; https adds it
    overview = await client.get("/ui/")
    assert overview.status_code == 200
    assert "<h1>Overview</h1>" in overview.text
    assert 'class="role role-admin"' in overview.text
    assert csrf_in(overview.text) == session_csrf(client)


async def test_the_viewer_token_signs_in_read_only(client):
    await signed_in(client, VIEWER_TOKEN)
    page = await client.get("/ui/")
    assert page.status_code == 200
    assert "viewer (read-only)" in page.text


async def test_a_wrong_token_is_refused_next_to_the_field(client):
    response = await client.post("/ui/login", data={"token": "not-the-token-at-all"})
    assert response.status_code == 401
    assert 'id="f-token-error"' in response.text and "Wrong token." in response.text
    assert 'aria-describedby="f-token-error"' in response.text
    assert "not-the-token-at-all" not in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")
    empty = await client.post("/ui/login", data={})
    assert empty.status_code == 401 and "Enter the API token" in empty.text


async def test_sign_in_returns_to_the_page_asked_for_never_elsewhere(client):
    first = await client.get("/ui/logs?service=a")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Flogs%3Fservice%3Da"
    back = await client.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "/ui/logs?service=a"})
    assert back.headers["location"] == "/ui/logs?service=a"
    for bad in ("https://evil.example/", "//evil.example/ui", "/ui\\..\\x", "/other", "/ui/login"):
        assert safe_next(bad) == "/ui/", bad


# sessions


@pytest.mark.parametrize("path", ["/ui/", "/ui/overview/panels", "/ui/dlq"])
async def test_no_session_redirects_to_sign_in(client, path):
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")


async def test_a_stale_forged_or_foreign_cookie_redirects_to_sign_in(client):
    now = datetime.now(UTC)
    expired = Session(ADMIN, "c" * 20, now - timedelta(seconds=1))
    viewer = sign_session(key_of(ADMIN_TOKEN), Session(VIEWER, "c" * 20, now + SESSION_TTL))
    body, mac = viewer.split(".")
    forged_body = sign_session(b"x", Session(ADMIN, "c" * 20, now + SESSION_TTL)).split(".")[0]
    cookies = {
        "expired": sign_session(key_of(ADMIN_TOKEN), expired),
        "forged role": f"{forged_body}.{mac}",
        "other key": sign_session(key_of("another-token-0123456789"), expired),
        "garbage": "not a cookie",
        "no mac": body,
    }
    for what, value in cookies.items():
        client.cookies.set(COOKIE, value, path="/ui")
        response = await client.get("/ui/")
        assert response.status_code == 303, what
        assert response.headers["location"] == "/ui/login?next=%2Fui%2F", what
        client.cookies.clear()


def test_a_session_reads_back_only_with_its_key_and_before_it_expires():
    key = key_of(ADMIN_TOKEN)
    session = Session(VIEWER, "token", datetime.now(UTC).replace(microsecond=0) + SESSION_TTL)
    value = sign_session(key, session)
    assert read_session(key, value) == session
    assert read_session(key_of(VIEWER_TOKEN), value) is None
    assert read_session(key, value, now=session.expires) is None
    assert not session.can_write and Session(ADMIN, "t", session.expires).can_write


async def test_an_htmx_request_without_a_session_reloads_to_sign_in(client):
    response = await client.get("/ui/overview/panels", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/ui/login?next=")


async def test_a_new_api_token_ends_every_session(app, settings, store, temporal, client):
    await signed_in(client, ADMIN_TOKEN)
    cookie = client.cookies.get(COOKIE, path="/ui")
    async with (
        console_app(
            settings, store, temporal, api_token=SecretStr("a-brand-new-token-0123456789")
        ) as other,
        client_of(other) as other_client,
    ):
        other_client.cookies.set(COOKIE, cookie, path="/ui")
        assert (await other_client.get("/ui/")).status_code == 303


async def test_sign_out_clears_the_session(client):
    await signed_in(client, VIEWER_TOKEN)
    response = await client.post("/ui/logout")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert "hub_session=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()
    assert client.cookies.get(COOKIE, path="/ui") is None
    assert (await client.get("/ui/")).status_code == 303


# writing: admin and CSRF only


async def test_a_viewer_post_is_refused_whatever_it_carries(client):
    csrf = await signed_in(client, VIEWER_TOKEN)
    for send in ({"data": {"csrf": csrf}}, {"headers": {"X-CSRF-Token": csrf}}):
        response = await client.post(WRITE_PATH, **send)
        assert response.status_code == 403
        assert "read-only" in response.text.lower()
        assert "<h1>Not allowed</h1>" in response.text


async def test_an_admin_post_needs_the_sessions_csrf_token(client):
    csrf = await signed_in(client, ADMIN_TOKEN)
    for send in ({}, {"data": {"csrf": "forged"}}, {"headers": {"X-CSRF-Token": "x" * 43}}):
        response = await client.post(WRITE_PATH, **send)
        assert response.status_code == 403, send
        assert "CSRF" in response.text
    assert (await client.post(WRITE_PATH, data={"csrf": csrf})).text == "written by admin"
    ok = await client.post(WRITE_PATH, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200


async def test_a_csrf_token_from_another_session_is_refused(app, client):
    theirs = await signed_in(client, ADMIN_TOKEN)
    async with client_of(app) as mine:
        await signed_in(mine, ADMIN_TOKEN)
        assert (await mine.post(WRITE_PATH, data={"csrf": theirs})).status_code == 403


# the API and the viewer token


async def test_the_api_takes_the_viewer_token_for_reads_only(app):
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    async with client_of(app, headers=viewer) as api:
        assert (await api.get("/services")).status_code == 200
        assert (await api.get("/dlq")).status_code == 200
        refused = await api.post("/services", json={"name": "x", "base_url": "http://x"})
        assert refused.status_code == 403
        assert "the viewer token is read-only" in refused.text
        assert (await api.delete("/dlq/1")).status_code == 403
        assert (await api.post("/events", json={"name": "a.b"})).status_code == 403
    async with client_of(app, headers={"Authorization": "Bearer wrong-token-0123456789"}) as api:
        assert (await api.get("/services")).status_code == 401


def test_a_short_or_reused_viewer_token_is_refused(settings):
    with pytest.raises(RuntimeError, match="HUB_VIEWER_TOKEN is too short"):
        create_app(console_settings(settings, viewer_token=SecretStr("x" * 15)))
    with pytest.raises(RuntimeError, match="must differ"):
        create_app(console_settings(settings, viewer_token=SecretStr(ADMIN_TOKEN)))
    app = create_app(console_settings(settings, viewer_token=SecretStr("")))
    assert app.state.viewer_token is None


# the overview


async def wait_for(condition) -> None:
    async with asyncio.timeout(20):
        for _ in range(1000):
            if await condition():
                return
            await asyncio.sleep(0.3)


def outcome_count(html: str, outcome: str) -> int:
    found = re.search(rf'id="outcome-{outcome}">(\d+)<', html)
    return int(found.group(1)) if found else 0


async def test_the_overview_shows_traffic_outcomes_dlq_and_open_circuits(
    client, hub, sink, make_service, make_rule, unique
):
    good = await make_service(auth_type="bearer", token=SERVICE_SECRET)
    bad = await make_service(max_attempts=1, cb_threshold=1, cb_cooldown=600)
    await make_rule(f"{unique}.ok", good, endpoint="/ok")
    await make_rule(f"{unique}.bad", bad, endpoint="/fail")
    sink.script("/fail", then=Reply(status=500))
    await hub.emit(f"{unique}.ok", {"n": 1}, event_id=f"{unique}-1", wait=True)
    await hub.emit(f"{unique}.bad", {"n": 2}, event_id=f"{unique}-2", wait=True)
    await signed_in(client, VIEWER_TOKEN)

    async def counted() -> bool:
        panels = (await client.get("/ui/overview/panels")).text
        return outcome_count(panels, "delivered") > 0 and outcome_count(panels, "dead_lettered") > 0

    await wait_for(counted)
    page = await client.get("/ui/")
    html = page.text
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'hx-get="/ui/overview/panels" hx-trigger="every 10s"' in html
    assert f'<a href="/ui/services/{good.name}">{good.name}</a>' in html  # latency row
    assert f'<a href="/ui/dlq?service={bad.name}">{bad.name}</a>' in html  # DLQ depth
    circuits = html.split('id="h-circuits"')[1]
    assert bad.name in circuits and ">open</span>" in circuits
    assert good.name not in circuits
    assert '<svg class="chart"' in html and "Events per minute, last hour" in html
    links = [a for a in attrs(html, "href") if a.startswith(UI_URL)]
    assert (
        f"{UI_URL}/namespaces/default/workflows?query=HubOutcome+%3D+%27dead_lettered%27" in links
    )
    assert any("HubServices" in a and good.name in a for a in links)
    assert SERVICE_SECRET not in html and ADMIN_TOKEN not in html and VIEWER_TOKEN not in html
    assert "<form" not in html.split("</header>")[1]  # a viewer gets no form that changes


async def test_the_overview_reads_only_todays_log_partitions(store):
    today = datetime.now(UTC).date()
    near = {f"delivery_log_p{today + timedelta(days=d):%Y%m%d}" for d in (-1, 0, 1)}
    async with store.pool.acquire() as conn:
        for sql in (PER_MINUTE, LATENCY):
            [plan] = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}"))
            read = set(re.findall(r'"Relation Name": "(delivery_log_p\d+)"', json.dumps(plan)))
            assert read and read <= near, read
        for sql in ACTIVITY_QUERIES:
            await conn.fetch(sql)  # each one runs
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {ACTIVITY_QUERIES[2]}")
        assert '"Relation Name": "dlq"' not in plan


# what pages may never contain


async def test_no_page_holds_a_secret_or_loads_from_another_host(client, make_service):
    service = await make_service(auth_type="bearer", token=SERVICE_SECRET)
    await signed_in(client, ADMIN_TOKEN)
    paths = ["/ui/login", "/ui/", *(f"/ui/{page}" for page, _ in NAV[1:])]
    paths.append(f"/ui/services/{service.name}")
    for path in paths:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.status_code)
        for secret in (SERVICE_SECRET, ADMIN_TOKEN, VIEWER_TOKEN):
            assert secret not in page.text, path
        for url in attrs(page.text, "src") + attrs(page.text, "action"):
            assert url.startswith("/") and not url.startswith("//"), (path, url)
        for url in attrs(page.text, "href"):
            assert url.startswith(("/ui", "#", "data:", UI_URL)), (path, url)


def test_no_template_or_asset_names_another_host():
    files = [*TEMPLATES_DIR.glob("*.html"), *STATIC_DIR.iterdir()]
    assert {f.name for f in files} >= {"base.html", "htmx.min.js", "console.css"}
    external = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|url\(\s*['\"]?(https?:)?//", re.I)
    for path in files:
        text = path.read_text(errors="replace")
        for found in external.finditer(text):
            context = text[max(found.start() - 20, 0) : found.end() + 20]
            raise AssertionError(f"{path.name}: {context!r}")


def test_first_load_assets_stay_under_150_kb():
    total = sum((STATIC_DIR / name).stat().st_size for name in ("htmx.min.js", "console.css"))
    assert total < 150 * 1024, total
    assert "Zero-Clause BSD" in (STATIC_DIR / "htmx.LICENSE").read_text()


# helpers: forms, charts, links


class Sample(BaseModel):
    name: str = Field(max_length=3)
    attempts: int = 1


def test_forms_drop_empties_and_report_errors_by_field():
    form = FormData([("csrf", "t"), ("name", "x"), ("attempts", ""), ("ids", "1"), ("ids", "2")])
    values = form_dict(form)
    assert values == {"name": "x", "ids": ["1", "2"]}
    with pytest.raises(ValidationError) as err:
        Sample.model_validate({"name": "s3cret-input", "attempts": "many"})
    errors = field_errors(err.value)
    assert set(errors) == {"name", "attempts"}
    assert "s3cret-input" not in json.dumps(errors)
    assert FORM_ERROR == "form"


def test_charts_are_escaped_svg_with_labels():
    minutes = [datetime(2024, 1, 1, 12, m, tzinfo=UTC) for m in range(60)]
    svg = time_bars(minutes, [Series("<ok>", "bar-ok", [1.0] * 60)], label="a & b")
    assert svg.startswith('<svg class="chart"') and 'aria-label="a &amp; b' in svg
    assert "<ok>" not in svg and "&lt;ok&gt;" in svg
    assert svg.count("<rect") == 120 and "12:15" in svg
    bars = hbars([("<svc>", (5.0, 50.0))], ("p50", "p99"), ("a", "b"), label="l", unit=" ms")
    assert "&lt;svc&gt;" in bars and "50 ms" in bars
    assert [_nice_max(v) for v in (0, 3, 7, 10, 11, 140)] == [1, 5, 10, 10, 20, 200]


def test_temporal_ui_links_quote_their_parts():
    links = TemporalLinks("http://ui:8233/", "my ns")
    assert links.workflows() == "http://ui:8233/namespaces/my%20ns/workflows"
    assert links.workflow("event-a/b") == "http://ui:8233/namespaces/my%20ns/workflows/event-a%2Fb"
    assert links.workflows("HubEventId = 'x'").endswith("?query=HubEventId+%3D+%27x%27")


async def test_console_errors_are_pages_and_api_errors_stay_json(client):
    await signed_in(client, VIEWER_TOKEN)
    page = await client.get("/ui/no-such-page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in page.text and 'class="role role-viewer"' in page.text
    api = await client.get("/no-such-route")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
