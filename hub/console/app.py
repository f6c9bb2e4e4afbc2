"""``mount_console``: the console's routes under /ui and its static files under /ui/static,
added to the API's application by the composition roots (``hub api``, ``hub dev``)."""

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from hub.config import Settings
from hub.console import auth
from hub.console.auth import SignInRequired, session_of
from hub.console.rendering import PREFIX, STATIC_DIR, PageError, TemporalLinks, error_page
from hub.console.routes import dlq, events, logs, overview, rules, service_holds, services

Handler = Callable[[Request, Any], Response | Awaitable[Response]]

PAGES = (overview, services, service_holds, rules, events, dlq, logs)
"""The page modules of ``hub.console.routes``, each with its ``router``."""


def mount_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console at /ui on ``app`` (built by ``hub.api.create_app``, whose lifespan
    opens the shared ``HubState``; sign-in uses its tokens)."""
    app.state.console_links = TemporalLinks(settings.temporal_ui_url, settings.temporal_namespace)
    app.state.console_settings = settings  # limits the pages apply as the API does
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    router.include_router(auth.router)
    for page in PAGES:
        router.include_router(page.router)
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    app.add_api_route(PREFIX, _to_overview, include_in_schema=False)
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _as_page(handler)
    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(PageError, _page_error)


def _as_page(handler: Handler) -> Handler:
    """The API's error handler, answering a console path with the error page instead of JSON
    (same status, same message: the API's messages never echo the input)."""

    async def handle(request: Request, error: Any) -> Response:
        answer = handler(request, error)
        response = await answer if inspect.isawaitable(answer) else answer
        if not request.url.path.startswith(f"{PREFIX}/") or not isinstance(response, JSONResponse):
            return response
        detail = json.loads(bytes(response.body)).get("detail")
        message = detail if isinstance(detail, str) else "The request was not valid."
        page = error_page(request, PageError(response.status_code, message, session_of(request)))
        if "Retry-After" in response.headers:
            page.headers["Retry-After"] = response.headers["Retry-After"]
        return page

    return handle


async def _to_overview() -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


async def _sign_in(request: Request, error: Exception) -> Response:
    assert isinstance(error, SignInRequired)
    query = urlencode({"next": error.next_path})
    if request.headers.get("HX-Request"):  # htmx: reload the whole page on the sign-in form
        return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/login?{query}"})
    return RedirectResponse(f"{PREFIX}/login?{query}", status_code=303)


async def _page_error(request: Request, error: Exception) -> HTMLResponse:
    assert isinstance(error, PageError)
    return error_page(request, error)
