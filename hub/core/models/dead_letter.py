"""The dead-letter queue: deliveries that failed for good, and their replays."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from hub.core.models.delivery import Delivery
from hub.core.models.event import Event
from hub.core.text import CleanText


class DeadLetter(BaseModel):
    """What the compensation step records for a delivery that could not be made."""

    delivery: Delivery
    event: Event
    data_ref: str | None = None
    """Where the event's data is when the event carries none (see DispatchInput)."""
    workflow_id: str
    error: CleanText
    error_type: str | None = None
    attempts: int


class DlqEntry(BaseModel):
    """A stored dead-letter row."""

    id: int
    created_at: datetime
    event_id: str
    event_name: str
    event: dict[str, Any]
    rule_id: int | None
    service: str
    method: str
    endpoint: str
    payload: str | None
    error: str
    attempts: int
    workflow_id: str
    delivery_id: str
    replay_count: int
    resolved_at: datetime | None


class ReplayInput(BaseModel):
    """Which DLQ row to replay, and which replay of it this is."""

    dlq_id: int
    replay: int


class ReplayOutcome(BaseModel):
    """How a replay ended; the DLQ row is resolved only if it delivered."""

    dlq_id: int
    replay: int
    workflow_id: str
    delivery_id: str | None = None
    delivered: bool
    attempts: int = 0
    error: CleanText | None = None
    error_type: str | None = None


class ReplayCounts(BaseModel):
    """What a bulk replay did."""

    requested: int = 0
    started: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
