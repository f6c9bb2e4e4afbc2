"""A real Chromium against the console served by uvicorn on 127.0.0.1.

Debian's ``/usr/bin/chromium`` (``.ci/run`` installs it), driven by Playwright through
``executable_path``: no browser is ever downloaded. Missing, it fails the run: it is not
skipped. The hub (create_app + mount_console, as ``hub api`` serves it) runs in the test
process on the session's PostgreSQL, Temporal and worker.

Screenshots go to ``$HUB_CONSOLE_SCREENSHOTS`` when it is set (``docs/console`` refreshes the
README's), else to a temporary folder.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.async_api import Browser, Page, Request, async_playwright, expect
from pydantic import SecretStr

from hub.api import create_app
from hub.console.app import mount_console
from hub.runtime.embedded import free_port

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 15_000
"""For every wait: generous, as 2 shared cores can be slow; a passing wait returns at once."""

expect.set_options(timeout=TIMEOUT_MS)
ADMIN_TOKEN = "console-ADMIN-token-0123456789"
VIEWER_TOKEN = "console-VIEWER-token-0123456789"


@pytest.fixture(scope="session")
def console_settings(settings):
    return settings.model_copy(
        update={"api_token": SecretStr(ADMIN_TOKEN), "viewer_token": SecretStr(VIEWER_TOKEN)}
    )


@pytest.fixture(scope="session")
async def hub_url(console_settings, store, temporal, worker) -> AsyncIterator[str]:
    """The API and the console on a free port of 127.0.0.1, with the session's worker."""
    app = create_app(console_settings, store=store, temporal=temporal)
    mount_console(app, console_settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def chromium_path() -> str:
    """Debian's Chromium, or the run fails (never skipped, never downloaded)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does); "
            "the browser tests never download one",
            pytrace=False,
        )
    return str(CHROMIUM)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable)
        yield chromium
        await chromium.close()


@dataclass
class Requests:
    """Every request the page made, to check that none leaves the hub."""

    urls: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.urls.append(request.url)

    def foreign(self, hub_url: str) -> list[str]:
        hub = urlsplit(hub_url).netloc
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "about", "blob") and urlsplit(u).netloc != hub
        ]


@pytest.fixture
async def requests_made() -> Requests:
    return Requests()


@pytest.fixture
async def page(browser, hub_url, requests_made) -> AsyncIterator[Page]:
    """A fresh browser context (no cookies) at the hub; it must reach no other host."""
    context = await browser.new_context(base_url=hub_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("request", requests_made.record)
    yield page
    await context.close()
    assert requests_made.urls, "the page made no request at all"
    assert requests_made.foreign(hub_url) == []


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("HUB_CONSOLE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def sign_in(page: Page, token: str = ADMIN_TOKEN) -> None:
    """Through the form, with the keyboard: type the token, press Enter."""
    await page.goto("/ui")
    await page.wait_for_url("**/ui/login**")
    await page.get_by_label("token", exact=False).fill(token)
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "/ui/login" not in url)
