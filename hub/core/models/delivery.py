"""Deliveries: one event to one service through one rule, and how each one ended."""

from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, Field

from hub.core.control import PRIORITY_DEFAULT
from hub.core.models.event import Event
from hub.core.models.log import LogEntryIn, LogStatus
from hub.core.models.rule import HttpMethod
from hub.core.models.service import MAX_ATTEMPTS_CAP, Service, ServiceType


class RetrySettings(BaseModel):
    """How Temporal retries one delivery; copied from the service when the event is planned."""

    max_attempts: int = Field(ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float
    timeout: float

    @classmethod
    def of(cls, service: Service) -> Self:
        """The service's settings as they are now (a later change of them does not apply)."""
        return cls(
            max_attempts=service.max_attempts, backoff=service.backoff, timeout=service.timeout
        )


class Delivery(BaseModel):
    """One event to one service through one rule, with its payload already rendered.

    It carries no secret: it is stored in the workflow history, which anyone with UI access
    can read. The activity looks the credentials up by service id.
    """

    id: str
    event_id: str
    event_name: str
    rule_id: int
    service_id: int
    service: str
    service_type: ServiceType
    method: HttpMethod
    endpoint: str
    payload: str | None
    payload_ref: str | None = None
    """The claim-check key of a payload too large to ride in the history (then payload is
    None)."""
    template_error: str | None = None
    retry: RetrySettings
    first_attempt: int = Field(default=1, ge=1)
    """The lowest attempt number the next attempt may carry; the log may raise it (an attempt
    cut off by a crash counts, see workflows.delivery)."""
    workflow_started: datetime | None = None
    """When the sending workflow started (it sets this on each attempt): no log row of the
    delivery in that workflow is older, so its lookups read only the newer partitions."""
    priority: int = PRIORITY_DEFAULT
    """The rule's priority key (1 first): its activities are queued with it."""
    weight: float = 1.0
    """The service's fairness weight: its activities' fairness key is the service."""
    lane: str | None = None
    """The ordered lane (a workflow id) this delivery waits its turn in, if its rule has an
    order key."""


class DeliveryPlan(BaseModel):
    """The deliveries an event fans out to, as seen by the worker's rule index."""

    config_version: int
    deliveries: list[Delivery]


class LogUpdate(BaseModel):
    """An attempt's log row whose final write failed: the workflow has it written."""

    log_id: int
    entry: LogEntryIn


class AttemptResult(BaseModel):
    """A successful attempt, as the delivery activity reports it."""

    attempt: int
    status_code: int | None = None
    latency_ms: float
    unlogged: LogUpdate | None = None
    """Set only when the database refused the attempt's final log write."""


class AttemptError(BaseModel):
    """A failed or held attempt as data: what the activity raised, so that one activity can
    report the first attempts of several deliveries (and the workflow raise it again)."""

    type: str
    message: str
    details: list[Any] = Field(default_factory=list)
    non_retryable: bool = False
    next_retry_seconds: float | None = None


FirstAttempt = AttemptResult | AttemptError
"""How a delivery's first attempt, made while the event was planned, ended."""


class PlannedDispatch(BaseModel):
    """The event's plan and the first attempts made with it, by delivery id; a delivery
    without one (its template failed, or it waits for its lane) is sent by the workflow."""

    plan: DeliveryPlan
    first: dict[str, FirstAttempt] = Field(default_factory=dict)


class DeliveryStatus(StrEnum):
    """How one delivery ended; Outcome sums up all of an event's deliveries."""

    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class DeliveryOutcome(BaseModel):
    """How one delivery of a workflow ended."""

    delivery_id: str
    rule_id: int
    service: str
    status: DeliveryStatus
    attempts: int
    error: str | None = None
    dlq_id: int | None = None

    @classmethod
    def of(
        cls,
        delivery: Delivery,
        status: DeliveryStatus,
        attempts: int,
        *,
        error: str | None = None,
        dlq_id: int | None = None,
    ) -> Self:
        """The outcome of this delivery, named by its id, rule and service."""
        return cls(
            delivery_id=delivery.id,
            rule_id=delivery.rule_id,
            service=delivery.service,
            status=status,
            attempts=attempts,
            error=error,
            dlq_id=dlq_id,
        )


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    PARTIAL = "partial"
    NO_MATCH = "no_match"
    PENDING = "pending"
    """Set when the workflow starts: still delivering (or waiting for the hub's database)."""
    PAUSED = "paused"
    """A delivery waits because an operator paused its service (HubHeld says which)."""
    HELD = "held"
    """A delivery waits without using attempts: its service is paused, its circuit is open,
    its rate is spent, or its lane is busy (HubHeld says which)."""


class DispatchInput(BaseModel):
    """Workflow input: the event plus the rule-index version the emitter matched it against."""

    event: Event
    config_version: int = 0
    data_ref: str | None = None
    """The claim-check key of the event's data when it is too large to ride in the history
    (then ``event.data`` is empty)."""
    lanes: list[str] = Field(default_factory=list)
    """The ordered lanes (workflow ids) the emitter queued this event in, in emission order;
    the workflow takes its turn in each (workflows.lane)."""


class DispatchResult(BaseModel):
    """What a dispatch workflow returns."""

    event_id: str
    outcome: Outcome
    deliveries: list[DeliveryOutcome] = Field(default_factory=list)


class EmitResult(BaseModel):
    """What emitting an event did: started a workflow, found a duplicate, or matched nothing."""

    event_id: str
    workflow_id: str | None
    matched: bool
    duplicate: bool = False
    services: list[str] = Field(default_factory=list)
    result: DispatchResult | None = None


def delivery_id(event_id: str, rule_id: int) -> str:
    """Stable across retries, worker restarts and DLQ replays, so receivers can deduplicate."""
    return f"{event_id}/{rule_id}"


def summarize(outcomes: list[DeliveryOutcome] | tuple[DeliveryOutcome, ...]) -> Outcome:
    """delivered / dead_lettered when all agree, partial when they do not."""
    statuses = {o.status for o in outcomes}
    if statuses == {DeliveryStatus.DELIVERED}:
        return Outcome.DELIVERED
    if statuses == {DeliveryStatus.DEAD_LETTERED}:
        return Outcome.DEAD_LETTERED
    return Outcome.PARTIAL


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
