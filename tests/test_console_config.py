"""The console's Services and Rules pages, through their forms, on the real app, store and
Temporal: create, edit, enable/disable, delete (after a confirmation), circuit reset, inline
validation errors, write-only secrets, and the template editor's live preview."""

import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from hub.console.routes.services import CREATE_FIELDS
from hub.core.models import CircuitState, LogEntryIn, LogStatus, RuleIn, ServiceIn
from hub.store import NotFoundError, Store
from tests.console_helpers import (
    ADMIN_TOKEN,
    VIEWER_TOKEN,
    client_of,
    console_app,
    csrf_in,
    signed_in,
)

SERVICE_TOKEN = "svc-console-TOKEN-never-shown-1234"
INBOUND_TOKEN = "inbound-console-TOKEN-never-shown-5678"
URL_PASSWORD = "url-console-PASSWORD-never-shown"
SECRETS = (SERVICE_TOKEN, INBOUND_TOKEN, URL_PASSWORD)


@pytest.fixture(scope="module")
async def app(settings, store, temporal, worker):
    async with console_app(settings, store, temporal) as app:
        yield app


@pytest.fixture
async def admin(app) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A signed-in admin client and its CSRF token; no page it got may hold a secret."""
    pages: list[str] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        pages.append(response.text)

    async with client_of(app, event_hooks={"response": [record]}) as client:
        yield client, await signed_in(client, ADMIN_TOKEN)
    for page in pages:
        for secret in SECRETS:
            assert secret not in page


def name() -> str:
    return f"c{secrets.token_hex(4)}"


def error_of(html: str, field: str) -> str:
    """The inline error next to a form field (the _forms.html field macro's markup)."""
    found = re.search(rf'id="f-{field}-error"[^>]*>([^<]*)<', html)
    assert found, f"no error next to {field}"
    return found.group(1)


def service_form(service: str, sink_url: str, **fields: str) -> dict[str, str]:
    return {
        "name": service,
        "type": "http",
        "base_url": sink_url,
        "auth_type": "none",
        "timeout": "5",
        "max_attempts": "3",
        "backoff": "0.1",
        "cb_threshold": "5",
        "cb_cooldown": "30",
        "response_queue": "",
        "sign": "",
        **fields,
    }


async def test_create_and_edit_a_service_keeps_its_token_write_only(admin, store: Store, sink):
    client, csrf = admin
    form = await client.get("/ui/services/new")
    assert form.status_code == 200
    assert csrf_in(form.text) == csrf  # the forms carry the session's token
    for label in ("Name", "Type", "URL", "Auth type", "Token", "Timeout (seconds)", "Max attempts",
                  "Backoff (seconds)", "Circuit breaker threshold",
                  "Circuit breaker cooldown (seconds)", "Response queue", "Signing",
                  "Inbound token", "Inbound secret"):  # fmt: skip
        assert f">{label}</label>" in form.text or f">{label} <span" in form.text, label
    service = name()
    url = sink.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    fields = service_form(
        service, url, auth_type="bearer", token=SERVICE_TOKEN, inbound_token=INBOUND_TOKEN
    )
    created = await client.post("/ui/services", data={"csrf": csrf, **fields})
    assert created.status_code == 303, created.text
    assert created.headers["location"] == f"/ui/services?saved={service}"
    stored = await store.services.get(service)
    assert (stored.auth_type.value, stored.max_attempts, stored.backoff) == ("bearer", 3, 0.1)
    assert stored.token is not None and stored.inbound_token is not None

    listing = await client.get(created.headers["location"])
    assert f"Saved service <strong>{service}</strong>" in listing.text
    assert re.search(rf'id="service-{service}".*?closed', listing.text, re.S)
    edit = await client.get(f"/ui/services/{service}")
    assert "A token is stored: leave empty to keep it." in edit.text
    assert "***" in edit.text  # the URL's password, masked

    # Empty token fields and the masked URL as shown: the stored credentials stay.
    changed = service_form(service, stored.base_url, auth_type="bearer", timeout="7.5")
    del changed["name"], changed["type"]
    saved = await client.post(f"/ui/services/{service}", data={"csrf": csrf, **changed})
    assert saved.status_code == 303, saved.text
    after = await store.services.get(service)
    assert after.timeout == 7.5
    assert after.token == stored.token and after.secret_url == stored.secret_url
    assert after.inbound_token == stored.inbound_token


async def test_service_forms_show_the_models_errors_next_to_their_fields(admin, sink):
    client, csrf = admin
    bad = service_form(name(), sink.url, auth_type="bearer", max_attempts="9")
    refused = await client.post("/ui/services", data={"csrf": csrf, **bad})
    assert refused.status_code == 422
    assert "less than or equal to 5" in error_of(refused.text, "max_attempts")

    no_token = service_form(name(), sink.url, auth_type="bearer")
    refused = await client.post("/ui/services", data={"csrf": csrf, **no_token})
    assert "needs a token" in error_of(refused.text, "token")

    wrong_url = service_form(name(), "ftp://example.com", token=SERVICE_TOKEN)
    refused = await client.post("/ui/services", data={"csrf": csrf, **wrong_url})
    assert "needs http:// or https://" in error_of(refused.text, "base_url")
    assert 'value="ftp://example.com"' in refused.text  # what was typed stays, but no secret

    queue = service_form(name(), sink.url, response_queue="replies")
    refused = await client.post("/ui/services", data={"csrf": csrf, **queue})
    assert "only for AMQP" in error_of(refused.text, "response_queue")

    taken = service_form(name(), sink.url)
    assert (await client.post("/ui/services", data={"csrf": csrf, **taken})).status_code == 303
    again = await client.post("/ui/services", data={"csrf": csrf, **taken})
    assert "already exists" in error_of(again.text, "name")

    edit = {"csrf": csrf, "base_url": sink.url, "auth_type": "none", "cb_cooldown": "0"}
    refused = await client.post(f"/ui/services/{taken['name']}", data=edit)
    assert refused.status_code == 422
    assert "greater than 0" in error_of(refused.text, "cb_cooldown")


async def test_enable_disable_reset_and_delete_with_a_confirmation(admin, store: Store, sink):
    client, csrf = admin
    service = name()
    fields = service_form(service, sink.url, cb_threshold="1")
    assert (await client.post("/ui/services", data={"csrf": csrf, **fields})).status_code == 303
    off = await client.post(f"/ui/services/{service}/disable", data={"csrf": csrf})
    assert off.status_code == 303
    assert not (await store.services.get(service)).enabled
    await client.post(f"/ui/services/{service}/enable", data={"csrf": csrf})
    assert (await store.services.get(service)).enabled

    # One failed attempt opens the circuit (threshold 1): the list shows it and the error.
    stored = await store.services.get(service)
    entry = LogEntryIn(service=service, status=LogStatus.FAILED, error="boom: sink down")
    log_id, _ = await store.log.begin(LogEntryIn(service=service, status=LogStatus.SENDING))
    await store.circuits.record_attempt(
        log_id, entry, service_id=stored.id, healthy=False, probe_owner=None, threshold=1,
        cooldown=30,
    )  # fmt: skip
    listing = await client.get("/ui/services")
    row = re.search(rf'id="service-{service}".*?</tr>', listing.text, re.S)
    assert row and ">open<" in row.group(0) and "boom: sink down" in row.group(0)
    reset = await client.post(f"/ui/services/{service}/reset-circuit", data={"csrf": csrf})
    assert reset.status_code == 303
    circuit = next(c for c in await store.circuits.all() if c.service == service)
    assert circuit.state is CircuitState.CLOSED

    await store.rules.create(RuleIn(event=f"{service}.x", service=service))
    confirm = await client.get(f"/ui/services/{service}/delete")
    assert csrf_in(confirm.text) == csrf
    assert "1 rule(s) deliver to it" in confirm.text and "Also delete its rules" in confirm.text
    refused = await client.post(f"/ui/services/{service}/delete", data={"csrf": csrf})
    assert refused.status_code == 409 and "has 1 rule(s)" in refused.text
    deleted = await client.post(
        f"/ui/services/{service}/delete", data={"csrf": csrf, "with_rules": "true"}
    )
    assert deleted.headers["location"] == f"/ui/services?deleted={service}"
    with pytest.raises(NotFoundError):
        await store.services.get(service)
    assert (await client.get(f"/ui/services/{service}")).status_code == 404


async def test_signing_secret_is_shown_once_only(admin, store: Store, sink):
    client, csrf = admin
    service = name()
    fields = service_form(service, sink.url, sign="hmac")
    saved = await client.post("/ui/services", data={"csrf": csrf, **fields})
    assert saved.status_code == 200, saved.text
    issued = re.search(r'id="issued-secret">(whsec_[^<]+)<', saved.text)
    assert issued and "shown this once" in saved.text
    edit = await client.get(f"/ui/services/{service}")
    assert issued.group(1) not in edit.text and "Signing now: hmac" in edit.text
    rotated = await client.post(f"/ui/services/{service}/rotate-secret", data={"csrf": csrf})
    assert rotated.status_code == 200 and issued.group(1) not in rotated.text
    assert "whsec_" in rotated.text
    stop = {"csrf": csrf, "base_url": sink.url, "auth_type": "none", "sign": "off"}
    assert (await client.post(f"/ui/services/{service}", data=stop)).status_code == 303
    assert (await store.services.get(service)).signing_keys == []


async def test_viewer_sees_no_buttons_and_cannot_post(app, make_service):
    service = await make_service()
    async with client_of(app) as client:
        csrf = await signed_in(client, VIEWER_TOKEN)
        for page in ("/ui/services", f"/ui/services/{service.name}", "/ui/rules"):
            html = (await client.get(page)).text
            assert "Add service" not in html and "Reset circuit" not in html
            assert 'type="submit">Save' not in html and "Disable</button>" not in html
        for path in (f"/ui/services/{service.name}/disable", "/ui/services", "/ui/rules"):
            refused = await client.post(path, data={"csrf": csrf, "name": "x"})
            assert refused.status_code == 403


async def test_writes_need_the_csrf_token_and_a_session(app, admin, make_service):
    client, _ = admin
    service = await make_service()
    forged = await client.post(f"/ui/services/{service.name}/disable", data={"csrf": "nope"})
    assert forged.status_code == 403
    async with client_of(app) as anonymous:
        away = await anonymous.get("/ui/services")
        assert away.status_code == 303 and away.headers["location"].startswith("/ui/login")


async def test_rules_create_edit_switch_and_delete(admin, store: Store, make_service):
    client, csrf = admin
    service = await make_service()
    new = await client.get(f"/ui/rules/new?service={service.name}")
    assert csrf_in(new.text) == csrf
    for label in ("Event", "Service", "Method", "Endpoint", "Template", "Sample event data"):
        assert f">{label}</label>" in new.text or f">{label} <span" in new.text, label
    fields = {
        "event": f"{service.name}.created",
        "service": service.name,
        "method": "PUT",
        "endpoint": "/hooks",
        "template": '{"id": {{data.id}}}',
        "sample_data": '{"id": 1}',
    }
    created = await client.post("/ui/rules", data={"csrf": csrf, **fields})
    assert created.status_code == 303, created.text
    rule_id = int(created.headers["location"].rsplit("=", 1)[1])
    rule = await store.rules.get(rule_id)
    assert rule.method.value == "PUT" and rule.endpoint == "/hooks"
    assert rule.template == fields["template"]
    listing = await client.get(f"/ui/rules?service={service.name}")
    assert f'id="rule-{rule_id}"' in listing.text

    bad = await client.post(
        f"/ui/rules/{rule_id}", data={"csrf": csrf, **fields, "template": '{"id": }'}
    )
    assert bad.status_code == 422
    assert "renders invalid JSON" in error_of(bad.text, "template")
    get_list = {**fields, "method": "GET", "template": "[1]"}
    bad = await client.post("/ui/rules", data={"csrf": csrf, **get_list})
    assert "JSON object" in error_of(bad.text, "template")
    missing = await client.post("/ui/rules", data={"csrf": csrf, **fields, "service": "nosuch"})
    assert "no service named" in error_of(missing.text, "service")

    edited = {**fields, "endpoint": "", "template": ""}  # empty: no endpoint, the whole event
    saved = await client.post(f"/ui/rules/{rule_id}", data={"csrf": csrf, **edited})
    assert saved.status_code == 303
    rule = await store.rules.get(rule_id)
    assert (rule.endpoint, rule.template) == ("", "")

    await client.post(f"/ui/rules/{rule_id}/disable", data={"csrf": csrf})
    assert not (await store.rules.get(rule_id)).enabled
    await client.post(f"/ui/rules/{rule_id}/enable", data={"csrf": csrf})
    assert (await store.rules.get(rule_id)).enabled
    confirm = await client.get(f"/ui/rules/{rule_id}/delete")
    assert "Delete rule</button>" in confirm.text
    gone = await client.post(f"/ui/rules/{rule_id}/delete", data={"csrf": csrf})
    assert gone.headers["location"] == f"/ui/rules?deleted={rule_id}"
    assert (await client.get(f"/ui/rules/{rule_id}")).status_code == 404


async def test_template_preview_renders_sample_data_or_shows_the_error(admin):
    client, _ = admin
    form = await client.get("/ui/rules/new")
    assert 'hx-post="/ui/rules/preview"' in form.text

    async def preview(template: str, sample: str, event: str = "order.created") -> str:
        response = await client.post(
            "/ui/rules/preview",
            data={"template": template, "sample_data": sample, "event": event},
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200  # htmx swaps only 2xx
        assert "<html" not in response.text  # a fragment
        return response.text

    shown = await preview('{"user": {{data.user.id}}, "n": "{{name}}"}', '{"user": {"id": 7}}')
    assert "&#34;user&#34;: 7" in shown and "order.created" in shown
    assert "preview-output" in shown
    broken = await preview('{"user": {{data.user.id}}', '{"user": {"id": 7}}')
    assert 'role="alert"' in broken and "renders invalid JSON" in broken
    assert "not valid JSON" in await preview("{}", "{nope")
    assert "must be a JSON object" in await preview("{}", "[1, 2]")
    whole = await preview("", '{"a": 1}', event="order.*")
    assert "&#34;name&#34;: &#34;preview&#34;" in whole


async def test_preview_needs_a_session(app):
    async with client_of(app) as client:
        response = await client.post(
            "/ui/rules/preview", data={"template": "{}"}, headers={"HX-Request": "true"}
        )
        assert response.status_code == 401 and "HX-Redirect" in response.headers


def test_service_in_is_what_the_form_validates():
    """The form's fields are ServiceIn's own (plus nothing): a rename would break both."""
    assert set(CREATE_FIELDS) <= set(ServiceIn.model_fields)
