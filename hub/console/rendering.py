"""Rendering console pages: one Jinja2 environment (autoescape on), ``render`` that gives every
template what the layout needs, the security headers of every page, and ``PageError`` for an
error page (404, 403, …) raised from any route."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from hub.console.session import Session

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PREFIX = "/ui"

NAV: list[tuple[str, str]] = [
    ("overview", "Overview"),
    ("services", "Services"),
    ("rules", "Rules"),
    ("events", "Events"),
    ("dlq", "DLQ"),
    ("logs", "Logs"),
]
"""(page, label) of the layout's navigation; a page's URL is /ui/<page> (Overview: /ui/)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Sent with every page: nothing but this hub is ever loaded or framed, nothing is cached."""


class PageError(Exception):
    """Raise from a console route to answer with the error page (``error.html``)."""

    def __init__(self, status_code: int, message: str, session: Session | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.session = session


@dataclass(frozen=True)
class TemporalLinks:
    """Links into the Temporal Web UI (HUB_TEMPORAL_UI_URL), for templates."""

    base_url: str
    namespace: str

    def workflows(self, query: str = "") -> str:
        """The workflow list, filtered by a visibility query such as
        ``HubOutcome="dead_lettered"``."""
        url = f"{self.base_url.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}/workflows"
        return f"{url}?{urlencode({'query': query})}" if query else url

    def workflow(self, workflow_id: str, run_id: str | None = None) -> str:
        """One workflow's page (its latest run unless ``run_id`` is given)."""
        url = (
            f"{self.base_url.rstrip('/')}/namespaces/{quote(self.namespace, safe='')}"
            f"/workflows/{quote(workflow_id, safe='')}"
        )
        return f"{url}/{quote(run_id, safe='')}" if run_id else url


def _when(value: datetime | None) -> str:
    """A timestamp as the pages show it: UTC, to the second."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value.tzinfo else value.isoformat(" ")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals["NAV"] = NAV
    env.globals["PREFIX"] = PREFIX
    return env


templates = Jinja2Templates(env=_environment())


def nav_of(path: str) -> str:
    """The active page of a console path: ``/ui/services/x`` -> ``services``."""
    rest = path.removeprefix(PREFIX).strip("/")
    page = rest.split("/", 1)[0]
    return page if page in dict(NAV) else "overview"


def render(
    request: Request,
    template: str,
    session: Session | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page or fragment. Every template gets ``session``, ``csrf`` (the session's token),
    ``can_write``, ``nav`` (the active page, unless given), ``temporal`` (``TemporalLinks``)
    and ``request``, plus ``context``."""
    links: TemporalLinks | None = getattr(request.app.state, "console_links", None)
    values: dict[str, Any] = {
        "session": session,
        "csrf": session.csrf if session else "",
        "can_write": bool(session and session.can_write),
        "nav": nav_of(request.url.path),
        "temporal": links or TemporalLinks("http://127.0.0.1:8233", "default"),
        **context,
    }
    response: HTMLResponse = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=SECURITY_HEADERS
    )
    return response


def error_page(request: Request, error: PageError) -> HTMLResponse:
    """The error page for a ``PageError``."""
    return render(
        request,
        "error.html",
        error.session,
        status_code=error.status_code,
        code=error.status_code,
        message=error.message,
    )
