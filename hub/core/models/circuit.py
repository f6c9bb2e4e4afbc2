"""Circuit breakers: one per service, as the database holds them."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class CircuitState(StrEnum):
    """closed -> open -> half_open -> closed (or open again); see hub.runtime.breaker."""

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


class CircuitOutcome(CircuitReading):
    """A circuit after an attempt's outcome was recorded; ``changed`` if that statement
    updated the row (rather than finding it in a state the outcome does not touch)."""

    changed: bool = False


class Circuit(CircuitReading):
    """A service's circuit, for listings."""

    service: str
    threshold: int
    cooldown: float
