"""AMQP response queues: what one scheduled drain reads and reports."""

from pydantic import BaseModel, Field


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
