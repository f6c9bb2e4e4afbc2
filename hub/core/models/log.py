"""The delivery log: one row per attempt, outbound or inbound."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from hub.core.text import CleanText


class Direction(StrEnum):
    """out: an attempt to deliver; in: a webhook or a message from a response queue."""

    IN = "in"
    OUT = "out"


EXCERPT_CHARS = 500
"""How much of a response or message the log keeps."""


class LogStatus(StrEnum):
    """sending: recorded before the request leaves, so a send cut off by a crash has its row;
    unknown: such a send, whose outcome nobody saw (the receiver may have got it)."""

    SENDING = "sending"
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


class LogEntryIn(BaseModel):
    """One delivery attempt (or one inbound message) for the delivery log."""

    # The delivery skeleton fills a row in as the attempt goes: clean what it sets, too.
    model_config = ConfigDict(validate_assignment=True)

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
    error: CleanText | None = None
    response_excerpt: CleanText | None = None


class LogEntry(LogEntryIn):
    """A stored delivery-log row."""

    id: int
    created_at: datetime


class PruneInput(BaseModel):
    """Input of one delivery-log pruning run (the schedule passes the retention setting)."""

    retention_days: int = Field(ge=1)
