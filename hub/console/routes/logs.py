"""Logs: the delivery log, newest first, filtered, a page at a time (keyset paging by row
id: ``before`` is the last id of the page above); each row expands to its response excerpt
and error."""

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import FormData

from hub.console.auth import SessionDep
from hub.console.forms import field_errors, form_dict
from hub.console.rendering import render
from hub.core.models import Direction, EventId, LogEntry, LogStatus, ServiceName
from hub.engine.state import HubState

router = APIRouter()

PAGE_ROWS = 50
MAX_PAGE_ROWS = 500
MAX_ID = 2**63 - 1


class LogFilter(BaseModel):
    """The filter form, with the same types as ``GET /logs``."""

    service: ServiceName | None = None
    status: LogStatus | None = None
    direction: Direction | None = None
    event: EventId | None = None
    before: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_ROWS)] = PAGE_ROWS

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with some fields changed (None drops one)."""
        values = {**self.model_dump(mode="json", exclude_none=True), **changes}
        if values.get("limit") == PAGE_ROWS:
            del values["limit"]
        return urlencode({k: v for k, v in values.items() if v is not None})


STATUS_OPTIONS = [("", "Any status"), *((s.value, s.value) for s in LogStatus)]
DIRECTION_OPTIONS = [("", "Any direction"), ("out", "out"), ("in", "in")]


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.api
    return state


@router.get("/logs", response_class=HTMLResponse)
async def logs(request: Request, session: SessionDep) -> HTMLResponse:
    raw = form_dict(FormData(request.query_params))
    try:
        spec = LogFilter.model_validate(raw)
    except ValidationError as err:
        return render(
            request,
            "logs.html",
            session,
            status_code=422,
            spec=LogFilter(),
            form=raw,
            errors=field_errors(err),
            rows=[],
            next_query=None,
            first_query=None,
            status_options=STATUS_OPTIONS,
            direction_options=DIRECTION_OPTIONS,
        )
    rows: list[LogEntry] = await _state(request).store.log.recent(
        service=spec.service,
        status=spec.status.value if spec.status else None,
        direction=spec.direction.value if spec.direction else None,
        event_id=spec.event,
        before_id=spec.before,
        limit=spec.limit,
    )
    next_query = spec.query(before=rows[-1].id) if len(rows) == spec.limit else None
    return render(
        request,
        "logs.html",
        session,
        spec=spec,
        form=spec.model_dump(mode="json", exclude_none=True),
        errors={},
        rows=rows,
        next_query=next_query,
        first_query=spec.query(before=None) if spec.before else None,
        status_options=STATUS_OPTIONS,
        direction_options=DIRECTION_OPTIONS,
    )
