"""Signing in to the console: the session cookie, the sign-in and sign-out routes, and the
dependencies every page uses (``SessionDep`` to read, ``WriterDep`` to change anything).

The session is a cookie ``hub_session``: JSON ``{role, csrf, exp}`` and its HMAC-SHA256, keyed
by a key derived from the API token (so a new token ends every session). The API token signs
in as ``admin``, HUB_VIEWER_TOKEN as ``viewer``, who reads but changes nothing: the server
refuses a viewer's POST with 403 whatever the page showed, and every POST of an admin must
carry the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``).
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import SecretStr

from hub.console.rendering import PageError, render
from hub.console.session import ADMIN, VIEWER, Session

COOKIE = "hub_session"
COOKIE_PATH = "/ui"
SESSION_TTL = timedelta(hours=8)
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_KEY_LABEL = b"temporal-hub console session v1"

router = APIRouter()


class SignInRequired(Exception):
    """No valid session: the console answers with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path


def _key(request: Request) -> bytes | None:
    token: SecretStr | None = request.app.state.api_token
    if token is None:
        return None
    return hmac.new(token.get_secret_value().encode(), _KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(key: bytes, session: Session) -> str:
    """The cookie value: base64url(JSON) "." base64url(HMAC-SHA256 of that text)."""
    body = {"role": session.role, "csrf": session.csrf, "exp": int(session.expires.timestamp())}
    text = _b64(json.dumps(body, separators=(",", ":")).encode())
    mac = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return f"{text}.{_b64(mac)}"


def read_session(key: bytes, value: str, now: datetime | None = None) -> Session | None:
    """The session a cookie holds, or None when it is forged, malformed or expired."""
    text, _, mac = value.partition(".")
    try:
        expected = hmac.new(key, text.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        body = json.loads(_unb64(text))
        session = Session(
            role=str(body["role"]),
            csrf=str(body["csrf"]),
            expires=datetime.fromtimestamp(int(body["exp"]), UTC),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if session.role not in (ADMIN, VIEWER) or session.expires <= (now or datetime.now(UTC)):
        return None
    return session


def session_of(request: Request) -> Session | None:
    """The request's session, or None when its cookie is missing, forged or expired."""
    key = _key(request)
    value = request.cookies.get(COOKIE)
    return read_session(key, value) if key is not None and value else None


def current_session(request: Request) -> Session:
    """The request's session; a missing, forged or expired cookie raises ``SignInRequired``."""
    session = session_of(request)
    if session is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise SignInRequired(request.url.path + query)
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def require_writer(request: Request, session: SessionDep) -> Session:
    """For state-changing requests: an admin session (else 403) and its CSRF token, from the
    form field ``csrf`` or the header ``X-CSRF-Token`` (else 403)."""
    if not session.can_write:
        raise PageError(403, "Read-only session: the viewer token cannot change anything.", session)
    given = request.headers.get(CSRF_HEADER)
    if given is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if given is None or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise PageError(403, "The form's CSRF token is missing or wrong: reload the page.", session)
    return session


WriterDep = Annotated[Session, Depends(require_writer)]


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def safe_next(next_path: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if (
        next_path
        and next_path.startswith(f"{COOKIE_PATH}/")
        and "\\" not in next_path
        and not next_path.startswith(f"{COOKIE_PATH}/login")
    ):
        return next_path
    return f"{COOKIE_PATH}/"


def role_for(request: Request, token: str) -> str | None:
    """``admin`` for the API token, ``viewer`` for HUB_VIEWER_TOKEN, else None (both compared,
    in constant time)."""
    admin = _matches(token, request.app.state.api_token)
    viewer = _matches(token, request.app.state.viewer_token)
    return ADMIN if admin else VIEWER if viewer else None


def _matches(given: str, secret: SecretStr | None) -> bool:
    return secret is not None and hmac.compare_digest(
        given.encode(), secret.get_secret_value().encode()
    )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, safe_next(next))


@router.post("/login", response_class=HTMLResponse, include_in_schema=False)
async def login(
    request: Request,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    target = safe_next(next)
    key = _key(request)
    role = role_for(request, token) if key is not None and token else None
    if key is None or role is None:
        error = "Enter the API token or the viewer token." if not token else "Wrong token."
        return _login_page(request, target, error=error, status_code=401)
    session = Session(role, secrets.token_urlsafe(32), datetime.now(UTC) + SESSION_TTL)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        sign_session(key, session),
        max_age=int(SESSION_TTL.total_seconds()),
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    """Ends the session: the cookie is cleared (no CSRF check: signing out harms no one)."""
    response = RedirectResponse(f"{COOKIE_PATH}/login", status_code=303)
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


def _login_page(
    request: Request, next_path: str, *, error: str | None = None, status_code: int = 200
) -> Response:
    disabled = request.app.state.api_token is None
    return render(
        request,
        "login.html",
        None,
        status_code=status_code,
        next_path=next_path,
        errors={"token": error} if error else {},
        disabled=disabled,
    )
