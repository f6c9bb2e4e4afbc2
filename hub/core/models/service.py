"""Services: the external HTTP APIs and AMQP brokers that rules deliver to."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from hub.core.control import DEFAULT_MAX_HOLD, Rate
from hub.core.models.event import Text
from hub.core.signing import SigningScheme, parse_hmac_secret, signing_scheme

MAX_ATTEMPTS_CAP = 5
MAX_TIMEOUT = 300.0
"""Seconds a service's requests may take at most."""


class ServiceType(StrEnum):
    HTTP = "http"
    AMQP = "amqp"


ServiceName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class AuthType(StrEnum):
    NONE = "none"
    BEARER = "bearer"
    APIKEY = "apikey"


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


def _inbound_secret(value: SecretStr) -> SecretStr:
    """A whsec_ secret (or empty, which removes it); checked without echoing it."""
    if value.get_secret_value():
        parse_hmac_secret(value.get_secret_value())
    return value


InboundSecret = Annotated[SecretStr, AfterValidator(_inbound_secret)]
Scheme = Annotated[SigningScheme, BeforeValidator(signing_scheme)]
MAX_GRACE_SECONDS = 30 * 86400
DEFAULT_GRACE_SECONDS = 86400


class SigningKey(BaseModel):
    """A key that signs a service's deliveries: the current one (no expiry), or one rotated
    out that still signs until ``expires_at``. The secret is sealed and never dumped."""

    id: int
    scheme: SigningScheme
    public_key: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    secret: SecretStr = Field(exclude=True, repr=False)

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


class ServiceFields(BaseModel):
    """What a service is made of; ServiceIn adds the checks for new input."""

    name: ServiceName
    type: ServiceType = ServiceType.HTTP
    base_url: Text
    auth_type: AuthType = AuthType.NONE
    token: SecretStr | None = None
    inbound_token: SecretStr | None = None
    inbound_secret: SecretStr | None = None
    timeout: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT)
    max_attempts: int = Field(default=5, ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float = Field(default=1.0, ge=0, le=3600)
    cb_threshold: int = Field(default=5, ge=1, le=1000)
    cb_cooldown: float = Field(default=30.0, gt=0, le=86400)
    response_queue: Text | None = Field(default=None, max_length=255)
    enabled: bool = True
    weight: float = Field(
        default=1.0, gt=0, le=1000, description="Share of worker capacity under a backlog."
    )
    rate: Rate | None = Field(
        default=None, description="At most this many deliveries, across workers: N/s or N/min."
    )
    max_hold: float = Field(
        default=DEFAULT_MAX_HOLD,
        gt=0,
        le=30 * 86400,
        description="Seconds a delivery may wait (paused, open circuit, rate) before the DLQ.",
    )


class ServiceIn(ServiceFields):
    """A service as an operator creates it."""

    model_config = ConfigDict(extra="forbid")

    inbound_secret: InboundSecret | None = None
    sign: Scheme | None = Field(
        default=None,
        description="Sign deliveries (Standard Webhooks) with a new hmac or ed25519 key.",
    )

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
    inbound_secret: InboundSecret | None = None
    sign: Scheme | None = Field(
        default=None,
        description="hmac or ed25519: sign deliveries (a new key, unless the service already "
        "signs with that scheme; another scheme is a rotation with a day's grace); null: stop.",
    )
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_CAP)
    backoff: float | None = Field(default=None, ge=0, le=3600)
    cb_threshold: int | None = Field(default=None, ge=1, le=1000)
    cb_cooldown: float | None = Field(default=None, gt=0, le=86400)
    response_queue: Text | None = Field(default=None, max_length=255)
    enabled: bool | None = None
    weight: float | None = Field(default=None, gt=0, le=1000)
    rate: Rate | None = Field(default=None, description="N/s or N/min; null removes the limit.")
    max_hold: float | None = Field(default=None, gt=0, le=30 * 86400)


class Service(ServiceFields):
    """A stored service (not re-checked: a row that was valid when written stays usable).

    Its credentials are as stored: ``token``, ``inbound_token``, ``inbound_secret`` and
    ``secret_url`` hold ciphertext (hub.secrets opens them), ``base_url`` has any password
    masked. All four are SecretStr, so they print and serialise as ``**********``.
    ``signing_keys`` are the active ones, newest first, their secrets sealed and never dumped.
    ``issued_secret`` is set only on the service a save just returned, when it made a signing
    key: the value to show once; it is never dumped either.
    """

    model_config = ConfigDict(extra="ignore")

    id: int
    secret_url: SecretStr | None = None
    signing_keys: list[SigningKey] = Field(default_factory=list)
    issued_secret: SecretStr | None = Field(default=None, exclude=True, repr=False)
    paused_at: datetime | None = None
    """Set while an operator holds the service's deliveries (``hub service pause``)."""
    created_at: datetime
    updated_at: datetime
