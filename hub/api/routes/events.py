"""``POST /events``: a producer submits an event; one workflow delivers it."""

from typing import Annotated

from fastapi import APIRouter, Body, Response

from hub.api.deps import StateDep
from hub.api.examples import EXAMPLES
from hub.api.schemas import EmitOut, EmitOutcome, EventIn, emit_responses
from hub.core.models import EmitResult
from hub.engine.state import HubState

router = APIRouter(tags=["ingest"])


def accepted(
    result: EmitResult, response: Response, state: HubState, *, source: str = "api"
) -> EmitOut:
    """202 for a started workflow, 200 for a duplicate or no match; counted for /metrics
    (hub_events_received_total) by ``source``: ``api``, or ``webhook`` for the webhook route.
    """
    outcome: EmitOutcome
    if not result.matched:
        outcome, detail = "no_match", "no enabled rule matches this event: nothing started"
    elif result.duplicate:
        outcome, detail = "duplicate", "this event id was already submitted: nothing new started"
    else:
        outcome, detail = "started", "started"
    state.metrics.received(source, outcome)
    response.status_code = 202 if outcome == "started" else 200
    return EmitOut(**result.model_dump(exclude={"result"}), detail=detail)


@router.post(
    "/events",
    status_code=202,
    response_model=EmitOut,
    responses=emit_responses("Duplicate event id, or no rule matches.", 413, 503),
)
async def post_event(
    event: Annotated[EventIn, Body(openapi_examples=EXAMPLES["event"])],
    response: Response,
    state: StateDep,
) -> EmitOut:
    """Submit an event: one workflow delivers it to every matching rule's service.

    413 over HUB_MAX_EVENT_BYTES; 503 with Retry-After while the database or Temporal is
    unavailable (nothing was accepted: retry).
    """
    result = await state.hub.emit(
        event.name, event.data, event_id=event.id, occurred_at=event.occurred_at
    )
    return accepted(result, response, state)
