"""Events: search Temporal visibility by event id or name, one event's workflows and
deliveries (every attempt, from the delivery log), and a form that emits a test event."""

import json
from dataclasses import dataclass, field
from datetime import datetime
from uuid import uuid4

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from temporalio.client import WorkflowExecution
from temporalio.service import RPCError

from hub.console.auth import SessionDep, WriterDep
from hub.console.forms import field_errors
from hub.console.rendering import render
from hub.console.session import Session
from hub.core.limits import EventTooLarge
from hub.core.models import EmitResult, Event, LogEntry
from hub.core.visibility import HUB_EVENT_ID, HUB_EVENT_NAME, HUB_OUTCOME
from hub.engine.state import HubState
from hub.store import StoreUnavailable

router = APIRouter()

SEARCH_LIMIT = 50
"""Workflows listed for one search (newest first)."""
RECENT_LIMIT = 20
"""Workflows listed with no search."""
LOG_ROWS_PER_EVENT = 500
"""Delivery-log rows read for one event's page."""
SCAN_LIMIT = 2000
"""Newest workflows scanned for a name with a backslash (see ``search``)."""
RECENT_QUERY = "WorkflowType = 'DispatchEventWorkflow'"
EVENT_WORKFLOWS = "WorkflowType IN ('DispatchEventWorkflow', 'ReplayDeadLetterWorkflow')"


PATTERN_HELP = {
    "name": "An event name has no spaces and no *, such as order.created",
    "id": "An event id starts with a letter or digit, then up to 199 letters, digits "
    "or . _ : @ / -",
}
"""Plain words for the Event model's patterns."""


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.api
    return state


def visibility_string(value: str) -> str:
    """A string literal for a Temporal visibility query (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class WorkflowRow:
    """One workflow of a search result or of an event's page."""

    workflow_id: str
    run_id: str
    workflow_type: str
    status: str
    outcome: str
    event_id: str
    event_name: str
    started: datetime | None
    closed: datetime | None


def workflow_row(execution: WorkflowExecution) -> WorkflowRow:
    attributes = execution.typed_search_attributes
    return WorkflowRow(
        workflow_id=execution.id,
        run_id=execution.run_id,
        workflow_type=execution.workflow_type,
        status=execution.status.name.lower() if execution.status else "unknown",
        outcome=attributes.get(HUB_OUTCOME) or "",
        event_id=attributes.get(HUB_EVENT_ID) or "",
        event_name=attributes.get(HUB_EVENT_NAME) or "",
        started=execution.start_time,
        closed=execution.close_time,
    )


async def list_workflows(request: Request, query: str, limit: int) -> list[WorkflowRow]:
    """Workflows matching a visibility query, newest first."""
    rows: list[WorkflowRow] = []
    async for execution in _state(request).temporal.list_workflows(query, limit=limit):
        rows.append(workflow_row(execution))
    return rows


def search_query(text: str) -> str:
    """The visibility query of the search box: an event id or an event name."""
    literal = visibility_string(text)
    return f"{HUB_EVENT_ID.name} = {literal} OR {HUB_EVENT_NAME.name} = {literal}"


async def search(request: Request, q: str) -> tuple[list[WorkflowRow], str]:
    """The workflows of an event id or name, and a note on how they were found.

    Temporal's SQLite visibility (the dev server's) matches no keyword that holds a backslash,
    as Moodle's event names do (``\\core\\event\\user_created``): for such a name with no
    hit, the newest SCAN_LIMIT event workflows are read and filtered here.
    """
    rows = await list_workflows(request, search_query(q), SEARCH_LIMIT)
    if rows or "\\" not in q:
        return rows, ""
    scanned = await list_workflows(request, EVENT_WORKFLOWS, SCAN_LIMIT)
    found = [r for r in scanned if q in (r.event_id, r.event_name)][:SEARCH_LIMIT]
    return found, f"Searched the newest {SCAN_LIMIT} event workflows for this name."


async def events_page(
    request: Request,
    session: Session,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    emitted: EmitResult | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The search page, with the emit form (and what the last emit did)."""
    q = request.query_params.get("q", "").strip()
    search_error = search_note = ""
    results: list[WorkflowRow] = []
    try:
        if q:
            results, search_note = await search(request, q)
        else:
            results = await list_workflows(request, RECENT_QUERY, RECENT_LIMIT)
    except RPCError as err:
        search_error = f"Temporal visibility refused the search: {err.message}"
    return render(
        request,
        "events.html",
        session,
        status_code=status_code,
        q=q,
        results=results,
        search_error=search_error,
        search_note=search_note,
        form=form or {"name": "", "data": "{}", "id": ""},
        errors=errors or {},
        emitted=emitted,
    )


@router.get("/events", response_class=HTMLResponse)
async def events(request: Request, session: SessionDep) -> HTMLResponse:
    return await events_page(request, session)


def parse_emit_form(values: dict[str, str]) -> tuple[Event | None, dict[str, str]]:
    """The emit form as an Event, validated by the API's own model, or the errors by field."""
    errors: dict[str, str] = {}
    try:
        data = json.loads(values["data"] or "{}")
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        errors["data"] = f"Data is not valid JSON: {err.msg} ({where})"
        data = {}
    if not errors and not isinstance(data, dict):
        errors["data"] = 'Data must be a JSON object, such as {"id": 42}'
        data = {}
    try:
        event = Event.model_validate(
            {"id": values["id"] or str(uuid4()), "name": values["name"], "data": data}
        )
    except ValidationError as err:
        found = field_errors(err)
        for key in ("name", "id"):
            if key in found and "pattern" in found[key]:
                found[key] = PATTERN_HELP[key]
        return None, {**found, **errors}
    return (None, errors) if errors else (event, errors)


@router.post("/events/emit", response_class=HTMLResponse)
async def emit(request: Request, session: WriterDep) -> HTMLResponse:
    """Emit a test event through HubClient.emit, as ``POST /events`` does."""
    raw = await request.form()
    values = {key: str(raw.get(key, "")).strip() for key in ("name", "data", "id")}
    event, errors = parse_emit_form(values)
    if event is None:
        return await events_page(request, session, form=values, errors=errors, status_code=422)
    try:
        result = await _state(request).hub.emit(event.name, event.data, event_id=event.id)
    except EventTooLarge as err:
        errors["data"] = str(err)
    except ValidationError as err:
        errors.update(field_errors(err))
    except (StoreUnavailable, RPCError) as err:
        errors["form"] = f"The hub could not accept the event now: {err}. Try again."
    if errors:
        return await events_page(request, session, form=values, errors=errors, status_code=422)
    return await events_page(request, session, form={**values, "id": ""}, emitted=result)


@dataclass
class DeliveryAttempts:
    """One delivery of an event, with every logged attempt, oldest first."""

    delivery_id: str
    service: str
    direction: str
    method: str
    target: str
    attempts: list[LogEntry] = field(default_factory=list)

    @property
    def last_status(self) -> str:
        return str(self.attempts[-1].status) if self.attempts else ""


def group_deliveries(rows: list[LogEntry]) -> list[DeliveryAttempts]:
    """Log rows (newest first) grouped by delivery, in the order the deliveries began."""
    groups: dict[str, DeliveryAttempts] = {}
    for row in reversed(rows):
        key = row.delivery_id or f"row-{row.id}"
        group = groups.get(key)
        if group is None:
            group = groups[key] = DeliveryAttempts(
                delivery_id=key,
                service=row.service,
                direction=str(row.direction),
                method=row.method or "",
                target=row.target or "",
            )
        group.attempts.append(row)
    return list(groups.values())


@router.get("/events/{event_id:path}", response_class=HTMLResponse)
async def event_detail(event_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    """One event: its workflows (the dispatch and any DLQ replays), deliveries, DLQ rows."""
    state = _state(request)
    workflows: list[WorkflowRow] = []
    search_error = ""
    try:
        query = f"{HUB_EVENT_ID.name} = {visibility_string(event_id)}"
        workflows = await list_workflows(request, query, SEARCH_LIMIT)
    except RPCError as err:
        search_error = f"Temporal visibility refused the search: {err.message}"
    rows = await state.store.log.recent(event_id=event_id, limit=LOG_ROWS_PER_EVENT)
    dead = await state.store.dlq.recent(event=event_id, include_resolved=True, limit=100)
    dead = [d for d in dead if d.event_id == event_id]
    found = bool(workflows or rows or dead)
    return render(
        request,
        "event_detail.html",
        session,
        status_code=200 if found or search_error else 404,
        event_id=event_id,
        found=found,
        workflows=workflows,
        search_error=search_error,
        deliveries=group_deliveries(rows),
        dead_letters=dead,
    )
