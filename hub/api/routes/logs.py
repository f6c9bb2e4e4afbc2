"""``/logs``: the delivery log, every attempt in and out, newest first."""

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import StoreDep
from hub.api.schemas import MAX_ID, LogPage, UtcDatetime
from hub.core.models import Direction, EventId, LogStatus, ServiceName

router = APIRouter(tags=["delivery log"])


@router.get("/logs", response_model=LogPage)
async def list_logs(
    store: StoreDep,
    service: ServiceName | None = None,
    status: LogStatus | None = None,
    direction: Direction | None = None,
    event: Annotated[EventId | None, Query(description="An event id.")] = None,
    since: UtcDatetime | None = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A row id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LogPage:
    """Delivery-log rows, newest first, one page at a time (keyset pagination by id)."""
    items = await store.log.recent(
        service=service,
        status=status.value if status else None,
        direction=direction.value if direction else None,
        event_id=event,
        since=since,
        before_id=before,
        limit=limit,
    )
    return LogPage(items=items, next_before=items[-1].id if len(items) == limit else None)
