"""The console in a real Chromium (Debian's), end to end: the issue's scenario.

Everything is done through the pages, as an operator would: forms filled and buttons pressed;
the sink and the database are only looked at. Each page is saved as a screenshot (see
conftest). The page fixture fails a test whose page asked any host but the hub.
"""

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import ADMIN_TOKEN, VIEWER_TOKEN, sign_in

DEAD_URL = "http://127.0.0.1:9"  # nothing listens on the discard port: refused at once
WAIT = 30.0


async def eventually(page: Page, url: str, locator: Callable[[], Locator]) -> Locator:
    """Load url until locator() is on it (the worker delivers in the background)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        await page.goto(url)
        found = locator()
        if await found.count():
            return found.first
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not on {url} after {WAIT:g}s: {found}")
        await asyncio.sleep(0.3)


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not after {WAIT:g}s")
        await asyncio.sleep(0.2)


async def shot(page: Page, folder, name: str) -> None:
    await page.screenshot(path=folder / f"{name}.png", full_page=True)


async def submit(page: Page, form: str) -> None:
    """Press the submit button of the form matching the selector, and wait for the answer."""
    async with page.expect_navigation():
        await page.locator(form).locator("button[type=submit]").first.click()


async def create_service(page: Page, name: str, url: str, screenshots) -> None:
    await page.goto("/ui/services/new")
    await page.locator("#f-name").fill(name)
    await page.locator("#f-base_url").fill(url)
    await page.locator("#f-backoff").fill("0.1")
    await shot(page, screenshots, "service-form")
    await submit(page, "form[action='/ui/services']")
    await expect(page).to_have_url(re.compile(r"/ui/services(\?|$)"))
    await expect(page.locator("main")).to_contain_text(name)


async def create_rule(page: Page, event: str, service: str, screenshots) -> None:
    await page.goto("/ui/rules/new")
    await page.locator("#f-event").fill(event)
    await page.locator("#f-service").select_option(service)
    await page.locator("#f-endpoint").fill("/orders")
    template = page.locator("#f-template")
    # Invalid JSON first: the live preview says so next to the editor.
    await template.fill('{"order": {{data.id}')
    await expect(page.locator("#preview .preview-error")).to_be_visible()
    await template.fill('{"order": {{data.id}}, "event": "{{name}}"}')
    await expect(page.locator("#preview .preview-output")).to_contain_text('"order"')
    await shot(page, screenshots, "rule-form")
    await submit(page, "form[action='/ui/rules']")
    await expect(page).to_have_url(re.compile(r"/ui/rules(\?|$)"))
    await expect(page.locator("main")).to_contain_text(event)


async def emit(page: Page, name: str, event_id: str, data: dict[str, object]) -> None:
    await page.goto("/ui/events")
    await page.locator("#f-name").fill(name)
    await page.locator("#f-data").fill(json.dumps(data))
    await page.locator("#f-id").fill(event_id)
    await submit(page, "form[action^='/ui/events/emit']")
    await expect(page.locator("#emit-result")).to_contain_text("Started workflow")


async def edit_url(page: Page, service: str, url: str) -> None:
    await page.goto(f"/ui/services/{service}")
    await page.locator("#f-base_url").fill(url)
    await submit(page, f"form[action='/ui/services/{service}']")
    await expect(page).to_have_url(re.compile(r"/ui/services(\?|$)"))


async def test_operator_scenario(page, sink, unique, store, screenshots):
    service, event = f"{unique}-shop", f"{unique}.order.*"
    await sign_in(page)
    await shot(page, screenshots, "overview")

    # Create a service and a rule through the forms.
    await create_service(page, service, sink.url, screenshots)
    await shot(page, screenshots, "services")
    await create_rule(page, event, service, screenshots)
    await shot(page, screenshots, "rules")

    # Emit from the console; the delivery shows in Logs and on the event's page.
    first = f"{unique}-1"
    await emit(page, f"{unique}.order.created", first, {"id": 7})
    await shot(page, screenshots, "events")
    await until(lambda: bool(sink.at("/orders")), "the sink got the delivery")
    [request] = sink.at("/orders")
    assert json.loads(request.body) == {"order": 7, "event": f"{unique}.order.created"}
    row = await eventually(
        page,
        f"/ui/logs?service={service}",
        lambda: page.locator("details.log-row", has=page.locator(".badge.log-ok")),
    )
    await row.locator("summary").click()  # expands to the response excerpt
    await expect(row).to_contain_text('{"ok":true}')
    await shot(page, screenshots, "logs")
    await eventually(page, f"/ui/events/{first}", lambda: page.locator(".badge.status-completed"))
    await expect(page.locator("main")).to_contain_text(service)
    await expect(page.get_by_role("link", name="Open in Temporal UI").first).to_be_visible()
    await shot(page, screenshots, "event-detail")
    await page.goto(f"/ui/events?q={first}")
    await expect(page.locator("#event-results")).to_contain_text(f"{unique}.order.created")

    # Break the service: the event is dead-lettered and the circuit opens.
    await edit_url(page, service, DEAD_URL)
    second = f"{unique}-2"
    await emit(page, f"{unique}.order.updated", second, {"id": 8})
    dead = await eventually(
        page,
        f"/ui/dlq?service={service}",
        lambda: page.locator("tbody tr", has_text=second),
    )
    await expect(dead).to_contain_text(f"{unique}.order.updated")
    await dead.locator("summary").click()  # the stored payload and the error
    await expect(dead.locator("details")).to_contain_text('{"order": 8')
    await expect(dead.locator("details")).to_contain_text("127.0.0.1:9")
    await shot(page, screenshots, "dlq")
    circuits = page.locator("section[aria-labelledby='h-circuits']")
    await eventually(page, "/ui/", lambda: circuits.locator("tr", has_text=service))
    await expect(circuits.locator("tr", has_text=service)).to_contain_text("open")
    await shot(page, screenshots, "overview-broken")

    # Fix it, reset the circuit, replay from the DLQ page: the row is resolved.
    await edit_url(page, service, sink.url)
    await page.goto("/ui/services")
    async with page.expect_navigation():
        await page.locator(f"form[action='/ui/services/{service}/reset-circuit'] button").click()
    [circuit] = [c for c in await store.circuits.all() if c.service == service]
    assert circuit.state.value == "closed"
    await page.goto(f"/ui/dlq?service={service}")
    dlq_id = (await page.locator("tbody tr", has_text=second).get_attribute("id") or "")[4:]
    async with page.expect_navigation():
        await page.get_by_role("button", name=f"Replay DLQ row {dlq_id}").click()
    await expect(page.locator("#replay-result [data-count=delivered]")).to_have_text("1")
    await shot(page, screenshots, "dlq-replayed")
    await until(lambda: len(sink.at("/orders")) == 2, "the replay reached the sink")
    replayed = sink.at("/orders")[1].body  # the stored payload, byte for byte
    assert json.loads(replayed) == {"order": 8, "event": f"{unique}.order.updated"}
    await page.goto(f"/ui/dlq?service={service}")
    await expect(page.locator(f"#dlq-{dlq_id}")).to_have_count(0)  # resolved: not listed
    await page.goto(f"/ui/dlq?service={service}&resolved=true")
    await expect(page.locator(f"#dlq-{dlq_id}")).to_contain_text("resolved")
    await shot(page, screenshots, "dlq-resolved")


# What would change something: a POST form's buttons, htmx posts, delete and "new" links.
WRITES = (
    "main form[method=post] button, main form[method=post] input[type=submit], "
    "main [hx-post], main a[href$='/delete'], main a[href$='/new']"
)


async def test_viewer_reads_but_changes_nothing(page, browser, hub_url, screenshots):
    await sign_in(page, VIEWER_TOKEN)
    await expect(page.locator("header")).to_contain_text("read-only")
    for path in ("/ui/", "/ui/services", "/ui/rules", "/ui/events", "/ui/dlq", "/ui/logs"):
        await page.goto(path)
        assert await page.locator(WRITES).count() == 0, f"{path} offers to change something"
    await shot(page, screenshots, "viewer-services")
    # A forged POST with the viewer's own session and CSRF token: refused whatever the page.
    csrf = json.loads(await page.locator("body").get_attribute("hx-headers") or "{}")
    answer = await page.request.post(
        "/ui/events/emit",
        form={"csrf": csrf["X-CSRF-Token"], "name": "viewer.forged", "data": "{}"},
    )
    assert answer.status == 403
    answer = await page.request.post(
        "/ui/services", form={"csrf": csrf["X-CSRF-Token"], "name": "forged", "base_url": hub_url}
    )
    assert answer.status == 403
    # The API takes the viewer token for reading only.
    auth = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    assert (await page.request.get("/services", headers=auth)).status == 200
    assert (await page.request.post("/events", headers=auth, data={"name": "x"})).status == 403


async def test_csrf_forgery_is_refused(page, browser, hub_url, unique, store):
    """Another site on 127.0.0.1 (same site for the cookie: ports do not count) posts the
    admin's browser to the console: without the session's CSRF token, refused."""
    await sign_in(page, ADMIN_TOKEN)
    evil = page.context  # same browser profile: the session cookie goes along
    attacker = await evil.new_page()
    origin = "http://127.0.0.1:1"
    name = f"{unique}-forged"
    form = f"""<form id=f method=post action="{hub_url}/ui/services">
        <input name=name value="{name}"><input name=base_url value="{hub_url}">
        <input name=csrf value="guessed"></form>
        <script>document.getElementById('f').submit()</script>"""
    await attacker.route(
        f"{origin}/**", lambda route: route.fulfill(body=form, content_type="text/html")
    )
    async with attacker.expect_response(f"{hub_url}/ui/services") as answer:
        await attacker.goto(f"{origin}/evil")
    assert (await answer.value).status == 403
    await attacker.close()
    # And from a script with the cookie but without the token (or with a wrong one).
    for fields in ({}, {"csrf": "x" * 43}):
        refused = await page.request.post("/ui/services", form={"name": name, **fields})
        assert refused.status == 403
    assert name not in [s.name for s in await store.services.all()]


async def test_sign_in_errors_and_sign_out(page, screenshots):
    await page.goto("/ui/logs")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Flogs"))
    await page.locator("#f-token").fill("not-the-token-at-all")
    await page.keyboard.press("Enter")
    await expect(page.locator("#f-token-error")).to_contain_text("Wrong token")
    await shot(page, screenshots, "login")
    await page.locator("#f-token").fill(ADMIN_TOKEN)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(r"/ui/logs$"))
    # Keyboard: the skip link comes first, then the navigation.
    await page.keyboard.press("Tab")
    focused = await page.evaluate("document.activeElement.textContent")
    assert "Skip to content" in focused
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await page.goto("/ui/services")
    await expect(page).to_have_url(re.compile(r"/ui/login"))


async def test_first_load_is_light(page):
    """The overview with everything it loads (HTML, CSS, htmx) stays under 150 KB."""
    await sign_in(page)
    responses = []
    page.on("response", lambda response: responses.append(response))
    await page.reload(wait_until="networkidle")
    sizes = {r.url: len(await r.body()) for r in responses if r.request.method == "GET"}
    assert any(url.endswith("/htmx.min.js") for url in sizes), sizes
    assert sum(sizes.values()) < 150_000, sizes
