"""The console's Events, DLQ and Logs pages over ASGI, against the real store, Temporal dev
server, worker and HTTP sinks."""

import asyncio
import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.console.app import mount_console
from hub.store import NotFoundError
from tests.sink import Reply

ADMIN_TOKEN = "console-admin-TOKEN-0123456789"
VIEWER_TOKEN = "console-viewer-TOKEN-987654321"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def console_settings(settings):
    return settings.model_copy(
        update={
            "api_token": SecretStr(ADMIN_TOKEN),
            "viewer_token": SecretStr(VIEWER_TOKEN),
            "temporal_ui_url": "http://temporal-ui.test:8233",
        }
    )


@pytest.fixture(scope="module")
async def console_app(console_settings, store, temporal, worker):
    app = create_app(console_settings, store=store, temporal=temporal)
    mount_console(app, console_settings)
    async with app.router.lifespan_context(app):
        yield app


class Console:
    """A signed-in browser stand-in: keeps the cookie, sends the page's CSRF token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str, **params: object) -> httpx.Response:
        response = await self.client.get(path, params=params)
        if match := CSRF.search(response.text):
            self.csrf = match.group(1)
        return response

    async def post(self, path: str, data: dict[str, object] | None = None) -> httpx.Response:
        if not self.csrf:
            await self.get("/ui/events")
        return await self.client.post(path, data={"csrf": self.csrf, **(data or {})})


async def signed_in(app, token: str) -> AsyncIterator[Console]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.post("/ui/login", data={"token": token, "next": "/ui/events"})
        assert response.status_code == 303
        yield Console(client)


@pytest.fixture
async def admin(console_app) -> AsyncIterator[Console]:
    async for console in signed_in(console_app, ADMIN_TOKEN):
        yield console


@pytest.fixture
async def viewer(console_app) -> AsyncIterator[Console]:
    async for console in signed_in(console_app, VIEWER_TOKEN):
        yield console


def text(response: httpx.Response) -> str:
    return html.unescape(response.text)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Temporal visibility is eventually consistent: poll until ``check`` holds."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


# events


async def test_emit_search_and_event_detail(admin, sink, make_service, make_rule, temporal, unique):
    service = await make_service()
    name = f"\\core\\event\\{unique}_created"  # Moodle's names: backslashes in the query
    await make_rule(name, service, endpoint="/ev", template='{"n": "{{data.n}}"}')
    event_id = f"{unique}-e1"

    emitted = await admin.post(
        "/ui/events/emit", {"name": name, "data": '{"n": 7}', "id": event_id}
    )
    assert emitted.status_code == 200
    assert f"Started workflow event-{event_id} for {service.name}" in text(emitted)
    await temporal.get_workflow_handle(f"event-{event_id}").result()

    async def listed(q: str) -> bool:
        page = text(await admin.get("/ui/events", q=q))
        return f"event-{event_id}" in page and "delivered" in page and "completed" in page

    await eventually(lambda: listed(event_id))
    await eventually(lambda: listed(name))
    assert f"event-{event_id}" not in text(await admin.get("/ui/events", q=f"{unique}-other"))

    detail = await admin.get(f"/ui/events/{event_id}")
    assert detail.status_code == 200
    page = text(detail)
    assert "DispatchEventWorkflow" in page and "delivered" in page
    assert (
        f'href="http://temporal-ui.test:8233/namespaces/default/workflows/event-{event_id}/' in page
    )
    assert "Open in Temporal UI" in page
    assert f"{service.name} · out · POST {sink.url}/ev" in page
    assert '{"ok":true}' in page  # the response excerpt, in the attempt's <details>
    assert "<details>" in detail.text

    missing = await admin.get(f"/ui/events/{unique}-never")
    assert missing.status_code == 404
    assert "No workflow, delivery or DLQ row" in missing.text


async def test_emit_form_errors_inline_and_outcomes(admin, viewer, make_service, make_rule, unique):
    bad_json = await admin.post("/ui/events/emit", {"name": f"{unique}.x", "data": "{nope"})
    assert bad_json.status_code == 422
    assert "Data is not valid JSON" in bad_json.text
    assert 'aria-describedby="f-data-help f-data-error"' in bad_json.text
    assert "{nope" in text(bad_json)  # the form keeps what was typed

    not_object = await admin.post("/ui/events/emit", {"name": f"{unique}.x", "data": "[1]"})
    assert "Data must be a JSON object" in text(not_object)
    bad_name = await admin.post("/ui/events/emit", {"name": "has space", "data": "{}"})
    assert bad_name.status_code == 422
    assert 'id="f-name-error"' in bad_name.text
    assert "An event name has no spaces" in bad_name.text
    bad_id = await admin.post("/ui/events/emit", {"name": f"{unique}.x", "id": "-bad id"})
    assert 'id="f-id-error"' in bad_id.text

    nothing = await admin.post("/ui/events/emit", {"name": f"{unique}.nomatch"})
    assert "No enabled rule matches this event" in nothing.text
    service = await make_service()
    await make_rule(f"{unique}.dup", service)
    form = {"name": f"{unique}.dup", "id": f"{unique}-dup"}
    assert "Started workflow" in (await admin.post("/ui/events/emit", form)).text
    assert "already submitted" in (await admin.post("/ui/events/emit", form)).text

    page = await viewer.get("/ui/events")
    assert page.status_code == 200 and "Emit event" not in page.text
    refused = await viewer.post("/ui/events/emit", {"name": f"{unique}.dup"})
    assert refused.status_code == 403
    forged = await admin.client.post("/ui/events/emit", data={"name": f"{unique}.dup"})
    assert forged.status_code == 403


# dead-letter queue


async def dead_letters(hub, store, name: str, service, count: int) -> list[int]:
    for n in range(count):
        result = await hub.emit(name, {"n": n}, wait=True)
        assert result.result is not None
    rows = await store.dlq.recent(service=service.name)
    return sorted(r.id for r in rows)


def counts(response: httpx.Response) -> dict[str, int]:
    found = re.findall(r'data-count="(\w+)">(\d+)<', response.text)
    return {key: int(value) for key, value in found}


async def test_dlq_filter_show_replay_and_delete(
    admin, viewer, hub, store, sink, make_service, make_rule, unique
):
    service = await make_service(max_attempts=1, cb_threshold=100)
    sink.script("/dlq", *([Reply(500)] * 5))
    await make_rule(f"{unique}.d", service, endpoint="/dlq", template='{"n": {{data.n}}}')
    ids = await dead_letters(hub, store, f"{unique}.d", service, 5)
    assert len(ids) == 5

    listed = await admin.get("/ui/dlq", service=service.name)
    page = text(listed)
    assert all(f'id="dlq-{i}"' in listed.text for i in ids)
    assert '{"n": 3}' in page and "HTTP 500" in page  # the stored payload and the error
    assert text(await admin.get("/ui/dlq", event=f"{unique}.d")).count('name="ids"') == 5
    assert 'name="ids"' not in (await admin.get("/ui/dlq", event=f"{unique}.none")).text
    assert 'name="ids"' not in (await admin.get("/ui/dlq", service=service.name, age="gt1d")).text
    assert (await admin.get("/ui/dlq", service=service.name, age="1h")).text.count(
        'name="ids"'
    ) == 5
    assert (await admin.get("/ui/dlq", service="Not A Name")).status_code == 422

    one = await admin.post(f"/ui/dlq/{ids[0]}/replay", {"service": service.name})
    assert counts(one) == dict(requested=1, started=1, delivered=1, failed=0, skipped=0, running=0)
    selected = await admin.post("/ui/dlq/replay", {"ids": [ids[0], ids[1]]})
    assert counts(selected) == dict(
        requested=2, started=1, delivered=1, failed=0, skipped=1, running=0
    )
    nothing = await admin.post("/ui/dlq/replay", {})
    assert nothing.status_code == 422 and "Select at least one row" in nothing.text

    every = await admin.post("/ui/dlq/replay-all", {"service": service.name, "age": "1h"})
    assert counts(every) == dict(
        requested=3, started=3, delivered=3, failed=0, skipped=0, running=0
    )
    left = await admin.get("/ui/dlq", service=service.name)
    assert "No dead letters match." in left.text
    resolved = await admin.get("/ui/dlq", service=service.name, resolved="true")
    assert all(f'id="dlq-{i}"' in resolved.text for i in ids)

    confirm = await admin.get(f"/ui/dlq/{ids[4]}/delete")
    assert f"Delete DLQ row {ids[4]}?" in confirm.text
    assert (await viewer.get(f"/ui/dlq/{ids[4]}")).status_code == 200
    assert (await viewer.post(f"/ui/dlq/{ids[4]}/delete")).status_code == 403
    viewer_page = await viewer.get("/ui/dlq", service=service.name)
    for control in (">Replay<", "Replay selected", "Replay all matching", ">Delete<", 'name="ids"'):
        assert control not in viewer_page.text
    deleted = await admin.post(f"/ui/dlq/{ids[4]}/delete")
    assert (deleted.status_code, deleted.headers["location"]) == (303, f"/ui/dlq?deleted={ids[4]}")
    assert f"Deleted DLQ row {ids[4]}." in (await admin.get("/ui/dlq", deleted=ids[4])).text
    with pytest.raises(NotFoundError):
        await store.dlq.get(ids[4])
    assert (await admin.post(f"/ui/dlq/{ids[4]}/delete")).status_code == 404
    assert (await admin.get(f"/ui/dlq/{ids[4]}")).status_code == 404


# delivery log


async def test_logs_filters_paging_and_expandable_rows(
    admin, hub, sink, make_service, make_rule, unique
):
    service = await make_service(max_attempts=1)
    sink.script("/log", 200, 200, Reply(500, b'{"why":"broken"}'))
    await make_rule(f"{unique}.l", service, endpoint="/log")
    for n in range(3):
        await hub.emit(f"{unique}.l", {"n": n}, event_id=f"{unique}-l{n}", wait=True)

    first = await admin.get("/ui/logs", service=service.name, limit=2)
    assert first.status_code == 200
    rows = re.findall(r'<details class="log-row" id="log-(\d+)"', first.text)
    assert len(rows) == 2 and rows == sorted(rows, reverse=True)
    older = re.search(r'href="/ui/logs\?([^"]+)" rel="next">Older<', first.text)
    assert older is not None
    query = html.unescape(older.group(1))
    assert f"before={rows[-1]}" in query and f"service={service.name}" in query
    second = await admin.client.get(f"/ui/logs?{query}")
    more = re.findall(r'<details class="log-row" id="log-(\d+)"', second.text)
    assert len(more) == 1 and int(more[0]) < int(rows[-1])
    assert "Newest" in second.text and 'rel="next"' not in second.text

    failed = await admin.get("/ui/logs", service=service.name, status="failed")
    page = text(failed)
    assert page.count('class="log-row"') == 1
    assert '{"why":"broken"}' in page and "HTTP 500" in page  # excerpt and error
    by_event = await admin.get("/ui/logs", event=f"{unique}-l0", direction="out")
    assert text(by_event).count('class="log-row"') == 1
    assert (
        text(await admin.get("/ui/logs", service=service.name, direction="in")).count(
            'class="log-row"'
        )
        == 0
    )

    bad = await admin.get("/ui/logs", status="nope", before="0")
    assert bad.status_code == 422
    assert 'id="f-status-error"' in bad.text
