"""What a transport is to the delivery skeleton (activities.attempt): it prepares a call for
one attempt, and the call reports what happened without raising for expected failures."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from hub.core.models import Delivery, Service
from hub.secrets import Credentials


class Unsendable(ValueError):
    """The delivery cannot be sent as it is (no payload, no route): no retry can help.

    ``target`` is where it would have gone, for the log row, when that is known.
    """

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


@dataclass
class Sent:
    """How one call ended, as the transport saw it."""

    healthy: bool = True
    """False only for failures that say something about the service (5xx, 408, 429,
    timeouts, refused or dropped connections, broker errors): the breaker counts them."""
    error: str | None = None
    """None when the call delivered."""
    retryable: bool = True
    retry_after: timedelta | None = None
    status_code: int | None = None
    excerpt: str | None = None


class Call(Protocol):
    """One prepared attempt; ``target`` names where it goes, without secrets."""

    @property
    def target(self) -> str: ...

    async def send(self) -> Sent: ...


class Transport(Protocol):
    """HTTP or AMQP: the only part of a delivery that differs between them."""

    def method(self, delivery: Delivery) -> str:
        """The log's method column: the HTTP method, or PUBLISH."""
        ...

    def prepare(
        self, delivery: Delivery, service: Service, credentials: Credentials, attempt: int
    ) -> Call:
        """The call for one attempt; raises ValueError (or Unsendable) if it cannot be made."""
        ...
