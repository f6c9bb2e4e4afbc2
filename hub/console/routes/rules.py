"""Rules: the list, create and edit forms (validated by RuleIn/RulePatch, as the API does),
enable/disable, delete after a confirmation, and the template editor's live preview.

The preview (``POST /ui/rules/preview``, an htmx fragment) renders the template against
editable sample event data with ``hub.core.templating``, exactly as ``hub template preview``
does (HUB_MAX_PAYLOAD_BYTES too); a template that fails or renders invalid JSON, or sample
data that is not a JSON object, shows its error in place of the rendering.
"""

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from hub.config import Settings
from hub.console.auth import SessionDep, WriterDep
from hub.console.forms import field_errors, form_dict
from hub.console.rendering import PageError, render
from hub.console.routes.services import done, hub_state, placed, sync_index
from hub.console.session import Session
from hub.core import templating
from hub.core.control import MISSING_KEY, PRIORITY_DEFAULT
from hub.core.models import Event, HttpMethod, Rule, RuleIn, RulePatch
from hub.engine.hold_counts import lane_depth
from hub.engine.state import HubState
from hub.store import NotFoundError

router = APIRouter()

RULE_FIELDS = ("event", "service", "method", "endpoint", "template", "priority", "order_key")
METHODS = [(m.value, m.value) for m in HttpMethod]
PRIORITIES = [("1", "1 (first)"), ("2", "2"), ("3", "3 (default)"), ("4", "4"), ("5", "5 (last)")]
SAMPLE_DATA = '{\n  "id": 42,\n  "user": {"id": 7, "email": "ada@example.com"}\n}'
"""The sample event data a new preview starts from."""
# RuleIn's own checks are about the template.
_MESSAGE_FIELDS = (("template", "template"), ("GET rule", "template"))


@dataclass(frozen=True)
class Preview:
    """A template's rendering (pretty-printed) or why there is none."""

    rendered: str | None = None
    error: str | None = None


def _payload_limit(request: Request) -> int:
    """HUB_MAX_PAYLOAD_BYTES of the settings the console was mounted with."""
    settings: Settings = request.app.state.console_settings
    return settings.max_payload_bytes


def preview(template: str, sample_data: str, event_name: str, max_bytes: int) -> Preview:
    """Render ``template`` against an event named ``event_name`` (``preview`` when that is a
    pattern, not a name) carrying ``sample_data``, as a delivery would."""
    try:
        data = json.loads(sample_data or "{}")
    except json.JSONDecodeError as err:
        return Preview(error=f"Sample event data is not valid JSON: {err.msg} (line {err.lineno})")
    if not isinstance(data, dict):
        return Preview(error="Sample event data must be a JSON object.")
    name = event_name.strip()
    if not name or "*" in name or any(c.isspace() for c in name):
        name = "preview"
    try:
        event = Event(id="preview", name=name[:255], data=data)
        rendered = templating.render(template, event, max_bytes=max_bytes)
    except ValidationError as err:
        return Preview(error="Sample event data: " + "; ".join(field_errors(err).values()))
    except templating.TemplateError as err:
        return Preview(error=str(err))
    return Preview(rendered=json.dumps(json.loads(rendered), indent=2, ensure_ascii=False))


def _row_id(text: str | None) -> int | None:
    """A rule id from a query string, if that is what it is."""
    return int(text) if text and text.isdigit() and len(text) < 19 else None


async def _rule(state: HubState, rule_id: int, session: Session) -> Rule:
    try:
        return await state.store.rules.get(rule_id)
    except NotFoundError:
        raise PageError(404, f"No rule with id {rule_id}.", session) from None


@router.get("/rules", response_class=HTMLResponse)
async def rules_page(
    request: Request,
    session: SessionDep,
    service: str | None = None,
    saved: str | None = None,
    deleted: str | None = None,
) -> HTMLResponse:
    """Every rule (or one service's), by id."""
    state = hub_state(request)
    services = [s.name for s in await state.store.services.all()]
    chosen = service if service in services else None
    rules = await state.store.rules.all(service=chosen)
    return render(
        request,
        "rules.html",
        session,
        rules=rules,
        services=services,
        service=chosen,
        saved=_row_id(saved) if _row_id(saved) in {r.id for r in rules} else None,
        deleted=_row_id(deleted),
    )


async def _form(
    request: Request,
    session: Session,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    rule_id: int | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    state = hub_state(request)
    services = [s.name for s in await state.store.services.all()]
    depth = await lane_depth(state.temporal, rule_id) if rule_id else None
    sample = values.get("sample_data") or SAMPLE_DATA
    shown = preview(
        values.get("template", ""), sample, values.get("event", ""), _payload_limit(request)
    )
    return render(
        request,
        "rules_form.html",
        session,
        status_code=status_code,
        values=values | {"sample_data": sample},
        errors=errors or {},
        rule_id=rule_id,
        services=[(name, name) for name in services],
        methods=METHODS,
        priorities=PRIORITIES,
        missing_key=MISSING_KEY,
        lane_depth=depth,
        preview=shown,
    )


@router.post("/rules/preview", response_class=HTMLResponse)
async def preview_fragment(request: Request, session: SessionDep) -> HTMLResponse:
    """The live preview (htmx): always 200, so htmx swaps an error in too. It changes
    nothing, so a viewer may use it."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    shown = preview(
        values.get("template", ""),
        values.get("sample_data", ""),
        values.get("event", ""),
        _payload_limit(request),
    )
    return render(request, "rules_preview.html", session, preview=shown)


@router.get("/rules/new", response_class=HTMLResponse)
async def new_rule(
    request: Request, session: SessionDep, service: str | None = None
) -> HTMLResponse:
    """The empty form (the service preselected when given)."""
    values = {"method": "POST", "service": service or "", "priority": PRIORITY_DEFAULT}
    return await _form(request, session, values=values)


@router.post("/rules", response_class=HTMLResponse)
async def create_rule(request: Request, session: WriterDep) -> Response:
    """Validate with RuleIn (as POST /rules does) and store; errors inline (422)."""
    values = form_dict(await request.form())
    state = hub_state(request)
    try:
        spec = RuleIn.model_validate({k: v for k, v in values.items() if k in RULE_FIELDS})
        rule = await state.store.rules.create(spec)
    except ValidationError as err:
        errors = placed(field_errors(err), _MESSAGE_FIELDS)
    except NotFoundError as err:
        errors = {"service": str(err)}
    else:
        await sync_index(state)
        return done("/rules", saved=str(rule.id))
    return await _form(request, session, values=values, errors=errors, status_code=422)


@router.get("/rules/{rule_id}", response_class=HTMLResponse)
async def edit_rule(request: Request, rule_id: int, session: SessionDep) -> HTMLResponse:
    """The edit form, its preview rendered with the sample data."""
    rule = await _rule(hub_state(request), rule_id, session)
    return await _form(request, session, values=rule.model_dump(mode="json"), rule_id=rule_id)


@router.post("/rules/{rule_id}", response_class=HTMLResponse)
async def update_rule(request: Request, rule_id: int, session: WriterDep) -> Response:
    """Validate with RulePatch, then the whole rule (as PATCH /rules/{id} does). An empty
    endpoint or template is a value (none; the whole event), not "keep"."""
    state = hub_state(request)
    current = await _rule(state, rule_id, session)
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}
    patch: dict[str, str | None] = {
        k: values[k] for k in ("event", "service", "method") if values.get(k)
    }
    patch |= {k: values.get(k, "") for k in ("endpoint", "template")}
    if values.get("priority"):
        patch["priority"] = values["priority"]
    patch["order_key"] = values.get("order_key", "").strip() or None
    try:
        rule = await state.store.rules.update(rule_id, RulePatch.model_validate(patch))
    except ValidationError as err:
        errors = placed(field_errors(err), _MESSAGE_FIELDS)
    except NotFoundError as err:
        errors = {"service": str(err)}
    else:
        await sync_index(state)
        return done("/rules", saved=str(rule.id))
    shown = current.model_dump(mode="json") | values
    return await _form(
        request, session, values=shown, errors=errors, rule_id=rule_id, status_code=422
    )


async def _switch(request: Request, rule_id: int, session: Session, enabled: bool) -> Response:
    state = hub_state(request)
    await _rule(state, rule_id, session)
    await state.store.rules.update(rule_id, RulePatch(enabled=enabled))
    await sync_index(state)
    return done("/rules", saved=str(rule_id))


@router.post("/rules/{rule_id}/enable")
async def enable_rule(request: Request, rule_id: int, session: WriterDep) -> Response:
    """Let the rule match again."""
    return await _switch(request, rule_id, session, True)


@router.post("/rules/{rule_id}/disable")
async def disable_rule(request: Request, rule_id: int, session: WriterDep) -> Response:
    """Stop the rule matching (events already started keep their deliveries)."""
    return await _switch(request, rule_id, session, False)


@router.get("/rules/{rule_id}/delete", response_class=HTMLResponse)
async def confirm_delete(request: Request, rule_id: int, session: SessionDep) -> HTMLResponse:
    """The confirmation step."""
    rule = await _rule(hub_state(request), rule_id, session)
    return render(request, "rules_delete.html", session, rule=rule)


@router.post("/rules/{rule_id}/delete")
async def delete_rule(request: Request, rule_id: int, session: WriterDep) -> Response:
    """Delete the rule: events stop matching it at once."""
    state = hub_state(request)
    try:
        await state.store.rules.delete(rule_id)
    except NotFoundError:
        raise PageError(404, f"No rule with id {rule_id}.", session) from None
    await sync_index(state)
    return done("/rules", deleted=str(rule_id))
