"""Services: the list (with each circuit and the last error), create and edit forms with every
field ``hub service add`` has, enable/disable, delete after a confirmation, circuit reset and
signing-secret rotation.

Credentials are write-only: no token, inbound token, inbound secret or URL password is ever
passed to a template; an empty token field keeps the stored one. A signing secret that a save
makes is shown once, on the page that answers the save (as the API and the CLI do).
"""

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from hub.console.auth import SessionDep, WriterDep
from hub.console.forms import FORM_ERROR, field_errors, form_dict
from hub.console.rendering import PREFIX, PageError, render
from hub.console.session import Session
from hub.core.models import (
    AuthType,
    Circuit,
    LogEntry,
    Service,
    ServiceIn,
    ServicePatch,
    ServiceType,
)
from hub.engine.hold_counts import HeldCounts, held_counts, held_totals
from hub.engine.state import HubState
from hub.secrets import SecretKeyError
from hub.store import ConflictError, NotFoundError, StoreError

router = APIRouter()

SECRET_FIELDS = ("token", "inbound_token", "inbound_secret")
"""Write-only fields: never rendered, never echoed back into a form."""
NUMBER_FIELDS = (
    "timeout",
    "max_attempts",
    "backoff",
    "cb_threshold",
    "cb_cooldown",
    "weight",
    "max_hold",
)
CREATE_FIELDS = (
    "name",
    "type",
    "base_url",
    "auth_type",
    *SECRET_FIELDS,
    "sign",
    *NUMBER_FIELDS,
    "response_queue",
    "rate",
)
TYPES = [(t.value, t.value.upper()) for t in ServiceType]
AUTH_TYPES = [(a.value, a.value) for a in AuthType]
SIGN_NEW = [("", "off"), ("hmac", "hmac"), ("ed25519", "ed25519")]
SIGN_EDIT = [("", "keep as it is"), ("hmac", "hmac"), ("ed25519", "ed25519"), ("off", "off")]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
"""ServiceName's pattern: a name that is safe in a query string as it is."""
LAST_ERROR_DAYS = 7
"""How far back the list looks for a service's last failed attempt (partitions pruned)."""

# A model-level message (ServiceIn's own checks) belongs next to the field it is about.
_MESSAGE_FIELDS = (
    ("needs a token", "token"),
    ("invalid URL", "base_url"),
    ("response queue", "response_queue"),
)


def hub_state(request: Request) -> HubState:
    """The shared connections (the API's lifespan opens them)."""
    state: HubState = request.app.state.api
    return state


async def sync_index(state: HubState) -> None:
    """Let this process's rule index see a change it just made (the NOTIFY may lag)."""
    await state.hub.index.refresh(min_version=await state.store.rules.config_version())


def placed(
    errors: dict[str, str], fields: tuple[tuple[str, str], ...] = _MESSAGE_FIELDS
) -> dict[str, str]:
    """Move a model-level message next to the field it is about: the first of ``fields``
    (words, field) whose words it contains."""
    general = errors.get(FORM_ERROR)
    if general is not None:
        for words, field in fields:
            if words in general and field not in errors:
                del errors[FORM_ERROR]
                errors[field] = general
                break
    return errors


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    """Posted values fit to re-render: every secret dropped."""
    return {k: v for k, v in values.items() if k not in SECRET_FIELDS}


def _values(service: Service) -> dict[str, Any]:
    """A stored service as its edit form shows it (URL password masked, no credentials)."""
    values = service.model_dump(mode="json", exclude=set(SECRET_FIELDS) | {"secret_url"})
    values["has_token"] = service.token is not None
    values["has_inbound_token"] = service.inbound_token is not None
    values["has_inbound_secret"] = service.inbound_secret is not None
    current = [k.scheme.value for k in service.signing_keys if k.expires_at is None]
    values["signing"] = current[0] if current else None
    values["sign"] = ""
    paused = service.paused_at
    values["paused_since"] = f"{paused:%Y-%m-%d %H:%M:%S} UTC" if paused else None
    return values


async def _service(state: HubState, name: str, session: Session) -> Service:
    try:
        return await state.store.services.get(name)
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None


async def _last_errors(state: HubState, services: list[Service]) -> dict[str, LogEntry]:
    """Each service's newest failure of the last LAST_ERROR_DAYS days, an attempt or an
    inbound message: the newest row of the service's non-ok index, whatever its direction
    (a direction filter would read through every inbound failure)."""
    since = datetime.now(UTC) - timedelta(days=LAST_ERROR_DAYS)
    found = await asyncio.gather(
        *(
            state.store.log.recent(service=s.name, status="failed", since=since, limit=1)
            for s in services
        )
    )
    return {s.name: rows[0] for s, rows in zip(services, found, strict=True) if rows}


def done(path: str = "/services", **query: str) -> RedirectResponse:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return RedirectResponse(f"{PREFIX}{path}{suffix}", status_code=303)


@router.get("/services", response_class=HTMLResponse)
async def services_page(
    request: Request,
    session: SessionDep,
    saved: str | None = None,
    deleted: str | None = None,
) -> HTMLResponse:
    """Every service with its circuit and last error."""
    state = hub_state(request)
    services = await state.store.services.all()
    circuits: dict[str, Circuit] = {c.service: c for c in await state.store.circuits.all()}
    errors = await _last_errors(state, services)
    held = await held_totals(state.temporal, [s.name for s in services])
    return render(
        request,
        "services.html",
        session,
        services=[_values(s) for s in services],
        circuits=circuits,
        last_errors=errors,
        held=held,
        saved=saved if saved in {s.name for s in services} else None,
        deleted=deleted if deleted and re.fullmatch(NAME_PATTERN, deleted) else None,
    )


def _form(
    request: Request,
    session: Session,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    editing: bool = False,
    status_code: int = 200,
    held: HeldCounts | None = None,
) -> HTMLResponse:
    return render(
        request,
        "services_form.html",
        session,
        status_code=status_code,
        values=values,
        errors=errors or {},
        editing=editing,
        types=TYPES,
        auth_types=AUTH_TYPES,
        sign_options=SIGN_EDIT if editing else SIGN_NEW,
        held=held,
    )


def _saved(request: Request, session: Session, service: Service, action: str) -> Response:
    """After a save: the page showing a new signing secret once, else back to the list."""
    if service.issued_secret is None:
        return done(saved=service.name)
    issued = service.issued_secret.get_secret_value()
    return render(
        request,
        "services_saved.html",
        session,
        name=service.name,
        action=action,
        issued=issued,
        public=issued.startswith("whpk_"),
    )


@router.get("/services/new", response_class=HTMLResponse)
async def new_service(request: Request, session: SessionDep) -> HTMLResponse:
    """The empty form, with ServiceIn's defaults."""
    defaults = {field: ServiceIn.model_fields[field].default for field in NUMBER_FIELDS}
    return _form(request, session, values={"type": "http", "auth_type": "none", **defaults})


@router.post("/services", response_class=HTMLResponse)
async def create_service(request: Request, session: WriterDep) -> Response:
    """Validate with ServiceIn (as POST /services does) and store; errors inline (422)."""
    values = form_dict(await request.form())
    data = {k: v for k, v in values.items() if k in CREATE_FIELDS}
    state = hub_state(request)
    try:
        spec = ServiceIn.model_validate(data)
        service = await state.store.services.create(spec)
    except ValidationError as err:
        errors = placed(field_errors(err))
    except ConflictError as err:
        errors = {"name": str(err)}
    except (StoreError, SecretKeyError) as err:
        errors = {"base_url" if isinstance(err, StoreError) else FORM_ERROR: str(err)}
    else:
        await sync_index(state)
        return _saved(request, session, service, "added")
    return _form(request, session, values=_shown(values), errors=errors, status_code=422)


@router.get("/services/{name}", response_class=HTMLResponse)
async def edit_service(request: Request, name: str, session: SessionDep) -> HTMLResponse:
    """The edit form (name and type are fixed, as in ``hub service update``), with the pause
    state and how many deliveries are held."""
    state = hub_state(request)
    service = await _service(state, name, session)
    held = await held_counts(state.temporal, service.name)
    return _form(request, session, values=_values(service), editing=True, held=held)


def _patch(values: dict[str, Any], current: Service) -> dict[str, Any]:
    """The ServicePatch fields an edit form posted: empty secrets keep the stored ones, an
    unchanged (masked) URL keeps the stored URL, an empty response queue clears it."""
    patch: dict[str, Any] = {k: values[k] for k in ("auth_type", *NUMBER_FIELDS) if k in values}
    patch.update({k: values[k] for k in SECRET_FIELDS if k in values})
    url = values.get("base_url", "")
    if url != current.base_url:
        patch["base_url"] = url
    sign = values.get("sign")
    if sign:
        patch["sign"] = None if sign == "off" else sign
    patch["response_queue"] = values.get("response_queue")
    patch["rate"] = values.get("rate")
    return patch


@router.post("/services/{name}", response_class=HTMLResponse)
async def update_service(request: Request, name: str, session: WriterDep) -> Response:
    """Validate with ServicePatch, then the whole service (as PATCH /services/{name} does)."""
    state = hub_state(request)
    current = await _service(state, name, session)
    values = form_dict(await request.form())
    try:
        if "***@" in values.get("base_url", "") and values["base_url"] != current.base_url:
            raise StoreError("the URL's password is hidden: type the whole URL with it again")
        patch = ServicePatch.model_validate(_patch(values, current))
        service = await state.store.services.update(name, patch)
    except ValidationError as err:
        errors = placed(field_errors(err))
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    except (StoreError, SecretKeyError) as err:
        errors = {"base_url" if isinstance(err, StoreError) else FORM_ERROR: str(err)}
    else:
        await sync_index(state)
        return _saved(request, session, service, "updated")
    shown = _values(current) | _shown(values) | {"sign": values.get("sign", "")}
    return _form(request, session, values=shown, errors=errors, editing=True, status_code=422)


async def _switch(request: Request, name: str, session: Session, enabled: bool) -> Response:
    state = hub_state(request)
    try:
        await state.store.services.update(name, ServicePatch(enabled=enabled))
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    await sync_index(state)
    return done(saved=name)


@router.post("/services/{name}/enable")
async def enable_service(request: Request, name: str, session: WriterDep) -> Response:
    """Let rules deliver to the service again."""
    return await _switch(request, name, session, True)


@router.post("/services/{name}/disable")
async def disable_service(request: Request, name: str, session: WriterDep) -> Response:
    """Stop matching the service's rules."""
    return await _switch(request, name, session, False)


@router.post("/services/{name}/reset-circuit")
async def reset_circuit(request: Request, name: str, session: WriterDep) -> Response:
    """Close the service's circuit by hand (``hub circuit reset NAME``)."""
    try:
        await hub_state(request).store.circuits.reset(name)
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    return done(saved=name)


@router.post("/services/{name}/rotate-secret", response_class=HTMLResponse)
async def rotate_secret(request: Request, name: str, session: WriterDep) -> Response:
    """A new signing key of the current scheme, shown once; the old ones sign for 24 h more
    (``hub service rotate-secret NAME``)."""
    state = hub_state(request)
    try:
        service = await state.store.services.rotate_secret(name, timedelta(hours=24))
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    except (ConflictError, SecretKeyError) as err:
        raise PageError(409, str(err), session) from None
    await sync_index(state)
    return _saved(request, session, service, "rotated the signing secret of")


async def _confirm(
    request: Request, session: Session, name: str, error: str | None = None
) -> HTMLResponse:
    state = hub_state(request)
    service = await _service(state, name, session)
    rules = await state.store.rules.all(service=name)
    return render(
        request,
        "services_delete.html",
        session,
        status_code=409 if error else 200,
        name=service.name,
        rules=rules,
        error=error,
    )


@router.get("/services/{name}/delete", response_class=HTMLResponse)
async def confirm_delete(request: Request, name: str, session: SessionDep) -> HTMLResponse:
    """The confirmation step: what goes with the service."""
    return await _confirm(request, session, name)


@router.post("/services/{name}/delete", response_class=HTMLResponse)
async def delete_service(request: Request, name: str, session: WriterDep) -> Response:
    """Delete the service (with its rules only when that box is ticked)."""
    state = hub_state(request)
    with_rules = (await request.form()).get("with_rules") == "true"
    try:
        await state.store.services.delete(name, with_rules=with_rules)
    except NotFoundError:
        raise PageError(404, f"No service named {name!r}.", session) from None
    except ConflictError as err:
        return await _confirm(request, session, name, str(err))
    await sync_index(state)
    return done(deleted=name)
