"""What the API reads and writes: request bodies, responses and path/query value types.

Responses never carry a credential: a service is shown as ``ServiceOut``, which only says
whether a token is set.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from hub.core.control import HoldReason
from hub.core.models import (
    AuthType,
    EventId,
    EventName,
    LogEntry,
    Rule,
    Service,
    ServiceName,
    ServiceType,
    check_json_value,
    mask_url,
)
from hub.core.models.service import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS
from hub.core.signing import SigningScheme

MAX_ID = 2**63 - 1  # PostgreSQL bigserial

RowId = Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])]
ServiceNamePath = Annotated[ServiceName, Path(examples=["crm"])]
FilterText = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00]+$")
]
EmitOutcome = Literal["started", "duplicate", "no_match"]
EMIT_OUTCOMES: tuple[EmitOutcome, ...] = ("started", "duplicate", "no_match")


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive input is taken as UTC), so the database never guesses a zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


class Problem(BaseModel):
    """The body of every error response except 422."""

    detail: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses with a Problem body."""
    return {code: {"model": Problem} for code in codes}


class EventIn(BaseModel):
    """An event as a producer posts it; the id defaults to a new UUID."""

    model_config = ConfigDict(extra="forbid")

    name: EventName
    data: dict[str, Any] = Field(default_factory=dict)
    id: EventId | None = None
    occurred_at: datetime | None = None

    @field_validator("data")
    @classmethod
    def _carriable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)
        return value


class EmitOut(BaseModel):
    """What submitting an event did (EmitResult without the workflow's result, plus a word)."""

    event_id: str
    workflow_id: str | None
    matched: bool
    duplicate: bool
    services: list[str]
    detail: str


def emit_responses(not_started: str, *codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for an ingest route: a 200 EmitOut when nothing started, then problems."""
    return {200: {"model": EmitOut, "description": not_started}, **problems(*codes)}


class SigningKeyOut(BaseModel):
    """A key that signs the service's deliveries (its secret is never shown)."""

    scheme: SigningScheme
    public_key: str | None = Field(description="For ed25519: the whpk_ key receivers verify with.")
    created_at: datetime
    expires_at: datetime | None = Field(
        description="null for the current key; a key rotated out signs until then."
    )


class ServiceOut(BaseModel):
    """A service as the API shows it: whether credentials are set, never the credentials."""

    id: int
    name: str
    type: ServiceType
    base_url: str = Field(description="With any password masked.")
    auth_type: AuthType
    has_token: bool
    has_inbound_token: bool
    has_inbound_secret: bool = Field(
        description="Whether signed webhooks (Standard Webhooks) are verified for this service."
    )
    signing_keys: list[SigningKeyOut] = Field(
        description="The active keys that sign deliveries, current first; empty: unsigned."
    )
    timeout: float
    max_attempts: int
    backoff: float
    cb_threshold: int
    cb_cooldown: float
    response_queue: str | None
    enabled: bool
    weight: float = Field(description="Share of worker capacity under a backlog.")
    rate: str | None = Field(description="At most N/s or N/min deliveries; null: no limit.")
    max_hold: float = Field(description="Seconds a delivery may be held before the DLQ.")
    paused_at: datetime | None = Field(
        description="When the service was paused (its deliveries are held); null: not paused."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, service: Service) -> Self:
        """The service with its credentials reduced to whether they are set."""
        values = service.model_dump(
            exclude={"token", "inbound_token", "inbound_secret", "secret_url"}
        )
        return cls.model_validate(
            values
            | {
                "base_url": mask_url(service.base_url),
                "has_token": service.token is not None,
                "has_inbound_token": service.inbound_token is not None,
                "has_inbound_secret": service.inbound_secret is not None,
            }
        )


class ServiceSaved(ServiceOut):
    """A service just written; a signing key made by this write is shown here, once."""

    signing_secret: str | None = Field(
        default=None,
        description="The new key's whsec_ secret (hmac) or whpk_ public key (ed25519), shown "
        "only in this response; absent when this write made no key.",
    )

    @classmethod
    def of(cls, service: Service) -> Self:
        saved = super().of(service)
        if service.issued_secret is not None:
            saved.signing_secret = service.issued_secret.get_secret_value()
        return saved


class ServiceDetail(ServiceOut):
    """One service, with how many of its deliveries are held (null when Temporal can't say)."""

    held: int | None = Field(
        default=None,
        description="Deliveries waiting without using attempts (paused, open circuit, rate "
        "limit, 429, ordered lane); null when Temporal is unreachable.",
    )
    held_by_reason: dict[HoldReason, int] | None = Field(
        default=None, description="The same, per reason; null when Temporal is unreachable."
    )


class ServiceResumed(ServiceOut):
    """A service just resumed, and how many held deliveries were woken to go out."""

    woken: int | None = Field(
        description="Held deliveries signalled to go now (at the release rate); null when "
        "Temporal is unreachable: they then wake on their own timers within 5 minutes."
    )


class RuleDetail(Rule):
    """One rule, with how many of its deliveries wait for their turn in ordered lanes."""

    lane_depth: int | None = Field(
        default=None, description="Deliveries waiting in lanes; null when Temporal can't say."
    )


class RotateIn(BaseModel):
    """How long the keys being replaced keep signing beside the new one."""

    model_config = ConfigDict(extra="forbid")

    grace: float = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="Seconds; 0 stops the old keys at once.",
    )


class ReplayStarted(BaseModel):
    """A replay that was started and not waited for."""

    dlq_id: int
    workflow_id: str


class ReplayFilter(BaseModel):
    """Which unresolved DLQ rows a bulk replay takes, oldest first."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName | None = None
    event: FilterText | None = Field(default=None, description="An event name or event id.")
    limit: int = Field(default=1000, ge=1, le=10000)
    wait: bool = False


class LogPage(BaseModel):
    """One page of the delivery log, newest first."""

    items: list[LogEntry]
    next_before: int | None = Field(
        description="Pass as ?before= for the next page; null when this page is the last."
    )


class Health(BaseModel):
    """Whether the API can do its work; /healthz answers 503 unless both are ok."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    temporal: Literal["ok", "unavailable"]
