"""Shared by the console's tests: an app with the console mounted, a client, signing in.

from tests.console_helpers import ADMIN_TOKEN, VIEWER_TOKEN, console_app, client_of, signed_in

@pytest.fixture(scope="module")
async def app(settings, store, temporal, worker):
    async with console_app(settings, store, temporal) as app:
        yield app

async def test_x(app):
    async with client_of(app) as client:
        csrf = await signed_in(client, ADMIN_TOKEN)
        page = await client.get("/ui/services")
        await client.post("/ui/services", data={"csrf": csrf, ...})
"""

import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.client import Client

from hub.api import create_app
from hub.config import Settings
from hub.console import mount_console
from hub.store import Store

ADMIN_TOKEN = "console-ADMIN-token-0123456789"
"""The API token of the console's tests (signs in as admin)."""
VIEWER_TOKEN = "console-VIEWER-token-0123456789"
"""HUB_VIEWER_TOKEN of the console's tests (signs in read-only)."""
COOKIE = "hub_session"


def console_settings(settings: Settings, **updates: object) -> Settings:
    """The session's settings with the console's two tokens."""
    return settings.model_copy(
        update={
            "api_token": SecretStr(ADMIN_TOKEN),
            "viewer_token": SecretStr(VIEWER_TOKEN),
            **updates,
        }
    )


@asynccontextmanager
async def console_app(
    settings: Settings, store: Store, temporal: Client, **updates: object
) -> AsyncIterator[FastAPI]:
    """``create_app`` + ``mount_console`` on the given store and client, lifespan running."""
    configured = console_settings(settings, **updates)
    app = create_app(configured, store=store, temporal=temporal)
    mount_console(app, configured)
    async with app.router.lifespan_context(app):
        yield app


def client_of(app: FastAPI, **kwargs: object) -> httpx.AsyncClient:
    """A client of the app (no token, no redirects followed, cookies kept)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://hub.test",
        follow_redirects=False,
        **kwargs,  # type: ignore[arg-type]
    )


async def signed_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> str:
    """Sign the client in with ``token``; returns the session's CSRF token."""
    response = await client.post("/ui/login", data={"token": token})
    assert response.status_code == 303, response.text
    return session_csrf(client)


def session_csrf(client: httpx.AsyncClient) -> str:
    """The CSRF token of the client's session cookie."""
    value = client.cookies.get(COOKIE, path="/ui")
    assert value, "not signed in"
    body = value.split(".", 1)[0]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["csrf"])


def csrf_in(html: str) -> str | None:
    """The CSRF token a page carries in its forms (None when it has none)."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    return found.group(1) if found else None
