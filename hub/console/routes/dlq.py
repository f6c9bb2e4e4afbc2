"""DLQ: filter dead-lettered deliveries, read their payload and error, replay one row, the
selected rows or everything matching the filter, and delete a row after a confirmation.

A replay starts one workflow per row (``Replayer.replay_many``, as the API does), then waits a
bounded time (REPLAY_WAIT_SECONDS, only for at most WAIT_AT_MOST replays) for them to end:
the page reports requested / started / delivered / failed / skipped and still running.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, StringConstraints, ValidationError
from starlette.datastructures import FormData
from temporalio.service import RPCError

from hub.console.auth import SessionDep, WriterDep
from hub.console.forms import field_errors, form_dict
from hub.console.rendering import PREFIX, render
from hub.console.session import Session
from hub.core.models import DlqEntry, ServiceName
from hub.engine.state import HubState
from hub.store import NotFoundError

router = APIRouter()

PAGE_ROWS = 100
REPLAY_ALL_LIMIT = 10_000
"""Most rows one "replay all matching" starts (oldest first); press it again for more."""
REPLAY_WAIT_SECONDS = 10.0
WAIT_AT_MOST = 200
"""Above this many started replays the page reports started counts without waiting."""

AGES: dict[str, tuple[str, timedelta | None, timedelta | None]] = {
    "": ("Any age", None, None),
    "1h": ("Last hour", timedelta(hours=1), None),
    "24h": ("Last 24 hours", timedelta(days=1), None),
    "7d": ("Last 7 days", timedelta(days=7), None),
    "gt1d": ("Older than 1 day", None, timedelta(days=1)),
    "gt7d": ("Older than 7 days", None, timedelta(days=7)),
}
"""Age choices: label, newer than, older than."""


class DlqFilter(BaseModel):
    """The filter form (GET query, or hidden fields of "Replay all matching")."""

    service: ServiceName | None = None
    event: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    age: str = ""
    resolved: bool = False

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """(created after, created before) of the age choice."""
        _, newer, older = AGES.get(self.age, AGES[""])
        now = datetime.now(UTC)
        return (now - newer if newer else None, now - older if older else None)


@dataclass
class ReplayReport:
    """What one press of a replay button did."""

    requested: int = 0
    started: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    waited: bool = True
    error: str = ""
    """Why some replays could not start (Temporal unreachable), if any did not."""


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.api
    return state


def parse_filter(values: dict[str, Any]) -> tuple[DlqFilter, dict[str, str]]:
    """The filter, or the default one and the errors by field."""
    try:
        spec = DlqFilter.model_validate(values)
    except ValidationError as err:
        return DlqFilter(), field_errors(err)
    if spec.age not in AGES:
        return DlqFilter(), {"age": "Choose one of the listed ages"}
    return spec, {}


async def dlq_page(
    request: Request,
    session: Session,
    spec: DlqFilter,
    *,
    errors: dict[str, str] | None = None,
    report: ReplayReport | None = None,
    notice: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    rows: list[DlqEntry] = []
    if not errors:
        after, before = spec.bounds()
        rows = await _state(request).store.dlq.recent(
            service=spec.service,
            event=spec.event,
            include_resolved=spec.resolved,
            limit=PAGE_ROWS,
            created_after=after,
            created_before=before,
        )
    return render(
        request,
        "dlq.html",
        session,
        status_code=status_code,
        spec=spec,
        ages=[(key, label) for key, (label, _, _) in AGES.items()],
        rows=rows,
        errors=errors or {},
        report=report,
        notice=notice,
        page_rows=PAGE_ROWS,
    )


async def _query_filter(request: Request) -> tuple[DlqFilter, dict[str, str]]:
    return parse_filter(form_dict(FormData(request.query_params)))


@router.get("/dlq", response_class=HTMLResponse)
async def dlq(request: Request, session: SessionDep) -> HTMLResponse:
    spec, errors = await _query_filter(request)
    deleted = request.query_params.get("deleted", "")
    notice = f"Deleted DLQ row {deleted}." if deleted.isdigit() else ""
    return await dlq_page(
        request, session, spec, errors=errors, notice=notice, status_code=422 if errors else 200
    )


async def replay_rows(request: Request, ids: list[int]) -> ReplayReport:
    """Replay the rows (``Replayer.replay_many``, as the API does); wait up to
    REPLAY_WAIT_SECONDS for their outcomes when there are at most WAIT_AT_MOST."""
    waited = len(ids) <= WAIT_AT_MOST
    try:
        counts = await _state(request).replayer.replay_many(
            ids, wait=waited, wait_seconds=REPLAY_WAIT_SECONDS
        )
    except RPCError as err:
        return ReplayReport(
            requested=len(ids), error=f"Temporal refused to start a replay: {err.message}"
        )
    running = counts.started - counts.delivered - counts.failed
    return ReplayReport(**counts.model_dump(), running=running, waited=waited)


async def _form(request: Request) -> dict[str, Any]:
    form = await request.form()
    values: dict[str, Any] = form_dict(form)
    values["ids"] = form.getlist("ids")
    return values


def _ids(raw: list[Any]) -> list[int]:
    return sorted({int(v) for v in raw if str(v).isdigit() and 0 < int(v) < 2**63})


def _after_post_filter(values: dict[str, Any]) -> DlqFilter:
    spec, _ = parse_filter({k: values[k] for k in DlqFilter.model_fields if k in values})
    return spec


@router.post("/dlq/replay", response_class=HTMLResponse)
async def replay_selected(request: Request, session: WriterDep) -> HTMLResponse:
    """Replay the rows whose checkboxes were ticked."""
    values = await _form(request)
    spec = _after_post_filter(values)
    ids = _ids(values["ids"])
    if not ids:
        errors = {"ids": "Select at least one row to replay"}
        return await dlq_page(request, session, spec, errors=errors, status_code=422)
    return await dlq_page(request, session, spec, report=await replay_rows(request, ids))


@router.post("/dlq/replay-all", response_class=HTMLResponse)
async def replay_all(request: Request, session: WriterDep) -> HTMLResponse:
    """Replay every unresolved row matching the filter (oldest first, REPLAY_ALL_LIMIT)."""
    values = await _form(request)
    spec, errors = parse_filter({k: values[k] for k in DlqFilter.model_fields if k in values})
    if errors:
        return await dlq_page(request, session, spec, errors=errors, status_code=422)
    after, before = spec.bounds()
    ids = await _state(request).store.dlq.ids(
        service=spec.service,
        event=spec.event,
        limit=REPLAY_ALL_LIMIT,
        created_after=after,
        created_before=before,
    )
    return await dlq_page(request, session, spec, report=await replay_rows(request, ids))


@router.post("/dlq/{dlq_id}/replay", response_class=HTMLResponse)
async def replay_one(dlq_id: int, request: Request, session: WriterDep) -> HTMLResponse:
    """Replay one row (its button sits in the selection form, so the filter comes along)."""
    spec = _after_post_filter(await _form(request))
    try:
        await _state(request).store.dlq.get(dlq_id)
    except NotFoundError:
        notice = f"DLQ row {dlq_id} no longer exists."
        return await dlq_page(request, session, spec, notice=notice, status_code=404)
    return await dlq_page(request, session, spec, report=await replay_rows(request, [dlq_id]))


@router.get("/dlq/{dlq_id}", response_class=HTMLResponse)
async def dlq_row(dlq_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    """One row in full, with its replay and delete buttons."""
    return await _row_page(request, session, dlq_id, "dlq_row.html", confirm=False)


@router.get("/dlq/{dlq_id}/delete", response_class=HTMLResponse)
async def confirm_delete(dlq_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    """The confirmation page of a delete."""
    return await _row_page(request, session, dlq_id, "dlq_row.html", confirm=True)


async def _row_page(
    request: Request, session: Session, dlq_id: int, template: str, *, confirm: bool
) -> HTMLResponse:
    try:
        row = await _state(request).store.dlq.get(dlq_id)
    except NotFoundError:
        return render(
            request,
            template,
            session,
            status_code=404,
            row=None,
            dlq_id=dlq_id,
            confirm=confirm,
        )
    return render(request, template, session, row=row, dlq_id=dlq_id, confirm=confirm)


@router.post("/dlq/{dlq_id}/delete", response_class=HTMLResponse)
async def delete(dlq_id: int, request: Request, session: WriterDep) -> Response:
    """Drop the row without replaying it, then back to the list (POST-redirect-GET)."""
    try:
        await _state(request).store.dlq.delete(dlq_id)
    except NotFoundError:
        notice = f"DLQ row {dlq_id} was already gone."
        return await dlq_page(request, session, DlqFilter(), notice=notice, status_code=404)
    return RedirectResponse(f"{PREFIX}/dlq?deleted={dlq_id}", status_code=303)
