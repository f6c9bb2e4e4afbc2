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


class PruneResult(BaseModel):
    """What one upkeep run of the delivery log did: the prune workflow's result."""

    made: list[str] = []
    """Day partitions made (ahead of time, or for rows waiting in the default partition)."""
    dropped: list[str] = []
    """Day partitions dropped: every row in them was past the retention."""
    busy: list[str] = []
    """Partitions to make or drop that stayed locked too long: the next run does them."""
    claims_removed: int = 0


_RETENTION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
RETENTION_HELP = "a number of days, or a duration such as 30d or 720h"


def retention_days(value: str | int) -> int:
    """HUB_LOG_RETENTION as whole days: ``30``, ``30d``, ``720h`` (rounded up to days)."""
    text = str(value).strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in _RETENTION_UNITS else (text, "d")
    if not number.isdigit() or int(number) == 0:
        raise ValueError(f"HUB_LOG_RETENTION must be {RETENTION_HELP}, not {str(value)!r}")
    return -(-int(number) * _RETENTION_UNITS[unit] // 86400)
