"""The delivery log: one row per attempt, outbound or inbound."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from hub.core.models.delivery import Delivery


class Direction(StrEnum):
    """out: an attempt to deliver; in: a webhook or a message from a response queue."""

    IN = "in"
    OUT = "out"


EXCERPT_CHARS = 500
"""How much of a response or message the log keeps."""


class LogStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


class LogEntryIn(BaseModel):
    """One delivery attempt (or one inbound message) for the delivery log."""

    direction: Direction = Direction.OUT
    service: str
    rule_id: int | None = None
    event_id: str | None = None
    event_name: str | None = None
    delivery_id: str | None = None
    workflow_id: str | None = None
    method: str | None = None
    target: str | None = None
    status: LogStatus
    status_code: int | None = None
    latency_ms: float | None = None
    attempt: int | None = None
    error: str | None = None
    response_excerpt: str | None = None


def attempt_log(delivery: Delivery, *, workflow_id: str, method: str, attempt: int) -> LogEntryIn:
    """The log row of one attempt at a delivery, failed until the attempt succeeds."""
    return LogEntryIn(
        service=delivery.service,
        rule_id=delivery.rule_id,
        event_id=delivery.event_id,
        event_name=delivery.event_name,
        delivery_id=delivery.id,
        workflow_id=workflow_id,
        method=method,
        target=delivery.endpoint,
        status=LogStatus.FAILED,
        attempt=attempt,
    )


class LogEntry(LogEntryIn):
    """A stored delivery-log row."""

    id: int
    created_at: datetime


class PruneInput(BaseModel):
    """Input of one delivery-log pruning run (the schedule passes the retention setting)."""

    retention_days: int = Field(ge=1)
