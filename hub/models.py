"""Pydantic models for everything that crosses a boundary: CLI, API, database, Temporal."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

MAX_ATTEMPTS_CAP = 5

EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")]
EventName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s*\x00]+$")
]
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00]+$")
]
MAX_DATA_DEPTH = 64
"""Deepest JSON nesting accepted in event data (the workflow's JSON encoder stops near 250)."""


def check_json_value(value: object) -> None:
    """Refuse JSON the hub cannot carry: too deep to encode, or NUL (PostgreSQL jsonb refuses)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL characters (\\u0000)")
        elif isinstance(item, dict | list):
            if depth > MAX_DATA_DEPTH:
                raise ValueError(f"JSON is nested deeper than {MAX_DATA_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
"""Text that PostgreSQL can store (it refuses NUL)."""
ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class ServiceType(StrEnum):
    HTTP = "http"
    AMQP = "amqp"


class AuthType(StrEnum):
    NONE = "none"
    BEARER = "bearer"
    APIKEY = "apikey"


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


Method = Annotated[HttpMethod, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]


class Event(BaseModel):
    """What a producer emits: one event becomes one workflow."""

    id: EventId
    name: EventName
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("data")
    @classmethod
    def _carriable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class ServiceFields(BaseModel):
    """What a service is made of; ServiceIn adds the checks for new input."""

    name: ServiceName
    type: ServiceType = ServiceType.HTTP
    base_url: Text
    auth_type: AuthType = AuthType.NONE
    token: SecretStr | None = None
    inbound_token: SecretStr | None = None
    timeout: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=5, ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float = Field(default=1.0, ge=0, le=3600)
    cb_threshold: int = Field(default=5, ge=1, le=1000)
    cb_cooldown: float = Field(default=30.0, gt=0, le=86400)
    response_queue: Text | None = Field(default=None, max_length=255)
    enabled: bool = True


class ServiceIn(ServiceFields):
    """A service as an operator creates it."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_base_url(self.type, self.base_url)
        if self.auth_type is not AuthType.NONE and not self.token:
            raise ValueError(f"auth type {self.auth_type.value!r} needs a token")
        if self.type is ServiceType.HTTP and self.response_queue:
            raise ValueError("a response queue is only for AMQP services")
        return self


class ServicePatch(BaseModel):
    """A change to a service: only the fields given change (name and type never do)."""

    model_config = ConfigDict(extra="forbid")

    base_url: Text | None = None
    auth_type: AuthType | None = None
    token: SecretStr | None = None
    inbound_token: SecretStr | None = None
    timeout: float | None = Field(default=None, gt=0, le=300)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float | None = Field(default=None, ge=0, le=3600)
    cb_threshold: int | None = Field(default=None, ge=1, le=1000)
    cb_cooldown: float | None = Field(default=None, gt=0, le=86400)
    response_queue: Text | None = Field(default=None, max_length=255)
    enabled: bool | None = None


class Service(ServiceFields):
    """A stored service (not re-checked: a row that was valid when written stays usable).

    Its credentials are as stored: ``token``, ``inbound_token`` and ``secret_url`` hold
    ciphertext (hub.secrets opens them), ``base_url`` has any password masked. All three are
    SecretStr, so they print and serialise as ``**********``.
    """

    model_config = ConfigDict(extra="ignore")

    id: int
    secret_url: SecretStr | None = None
    created_at: datetime
    updated_at: datetime


def check_base_url(service_type: ServiceType, url: str) -> None:
    """Reject URLs that cannot work for the service type, with the reason."""
    schemes = {"http", "https"} if service_type is ServiceType.HTTP else {"amqp", "amqps"}
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        allowed = " or ".join(sorted(f"{s}://" for s in schemes))
        raise ValueError(
            f"invalid URL {mask_url(url)!r}: a {service_type.value} service needs {allowed}"
        )
    if not parts.hostname:
        raise ValueError(f"invalid URL {mask_url(url)!r}: no host")


def mask_url(url: str) -> str:
    """The URL with any password replaced, for display."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


class RuleFields(BaseModel):
    """What a rule is made of: which events go to which service, and how."""

    event: EventPattern
    service: ServiceName
    method: Method = HttpMethod.POST
    endpoint: Text = Field(default="", max_length=2000)
    template: Text = Field(default="", max_length=65536)
    enabled: bool = True


class RuleIn(RuleFields):
    """A rule as an operator creates it; its template must be able to render JSON."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _renders_json(self) -> Self:
        """Refuse a template that cannot render JSON, or a GET whose payload is no object."""
        from hub import templating

        rendered = templating.check(self.template)
        if self.method is HttpMethod.GET and not rendered.startswith("{"):
            raise ValueError("a GET rule's template must render a JSON object (the query string)")
        return self


class RulePatch(BaseModel):
    """A change to a rule: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    event: EventPattern | None = None
    service: ServiceName | None = None
    method: Method | None = None
    endpoint: Text | None = Field(default=None, max_length=2000)
    template: Text | None = Field(default=None, max_length=65536)
    enabled: bool | None = None


class Rule(RuleFields):
    """A stored rule (not re-checked: a bad template fails its deliveries, not the index)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: datetime
    updated_at: datetime


class RetrySettings(BaseModel):
    """How Temporal retries one delivery; copied from the service when the event is planned."""

    max_attempts: int = Field(ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float
    timeout: float


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
    template_error: str | None = None
    retry: RetrySettings
    first_attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPTS_CAP)
    """The delivery's attempt number of the activity's first attempt (see workflows.delivery)."""


class DeliveryPlan(BaseModel):
    """The deliveries an event fans out to, as seen by the worker's rule index."""

    config_version: int
    deliveries: list[Delivery]


class AttemptResult(BaseModel):
    """A successful attempt, as the delivery activity reports it."""

    attempt: int
    status_code: int | None = None
    latency_ms: float


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    PARTIAL = "partial"
    NO_MATCH = "no_match"


class DeliveryOutcome(BaseModel):
    """How one delivery of a workflow ended."""

    delivery_id: str
    rule_id: int
    service: str
    status: DeliveryStatus
    attempts: int
    error: str | None = None
    dlq_id: int | None = None


class DispatchInput(BaseModel):
    """Workflow input: the event plus the rule-index version the emitter matched it against."""

    event: Event
    config_version: int = 0


class DispatchResult(BaseModel):
    """What a dispatch workflow returns."""

    event_id: str
    outcome: Outcome
    deliveries: list[DeliveryOutcome] = Field(default_factory=list)


class DeadLetter(BaseModel):
    """What the compensation step records for a delivery that could not be made."""

    delivery: Delivery
    event: Event
    workflow_id: str
    error: str
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
    error: str | None = None
    error_type: str | None = None


class ReplayCounts(BaseModel):
    """What a bulk replay did."""

    requested: int = 0
    started: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


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


def attempt_log(delivery: "Delivery", *, workflow_id: str, method: str, attempt: int) -> LogEntryIn:
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


class ConsumeInput(BaseModel):
    """Input of one response-consumption run."""

    max_messages: int = Field(default=500, ge=1)


class ResponseQueue(BaseModel):
    """An enabled AMQP service with a response queue to drain."""

    service_id: int
    service: str
    queue: str


class ConsumeRequest(BaseModel):
    """One response queue to drain, and how many messages at most."""

    source: ResponseQueue
    max_messages: int = Field(ge=1)


class ConsumeResult(BaseModel):
    """What draining one response queue did."""

    service: str
    queue: str
    consumed: int = 0
    rejected: int = 0
    error: str | None = None


class ConsumeSummary(BaseModel):
    """What one consumption run did, per service."""

    results: list[ConsumeResult] = Field(default_factory=list)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitReading(BaseModel):
    """A circuit's state as one statement left it; ``probe`` if that statement granted one."""

    state: CircuitState
    failures: int
    opened_at: datetime | None
    retry_in: float = Field(description="Seconds until an open circuit lets a probe through.")
    probe: bool = False


class Circuit(CircuitReading):
    """A service's circuit, for listings."""

    service: str
    threshold: int
    cooldown: float


class EmitResult(BaseModel):
    """What emitting an event did: started a workflow, found a duplicate, or matched nothing."""

    event_id: str
    workflow_id: str | None
    matched: bool
    duplicate: bool = False
    services: list[str] = Field(default_factory=list)
    result: DispatchResult | None = None
