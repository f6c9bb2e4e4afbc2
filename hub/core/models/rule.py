"""Rules: which events go to which service, and how."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hub.core import templating
from hub.core.control import PRIORITY_DEFAULT, PRIORITY_HIGHEST, PRIORITY_LOWEST, OrderKey
from hub.core.models.event import EventPattern, Text
from hub.core.models.service import ServiceName


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


Method = Annotated[HttpMethod, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)]


class RuleFields(BaseModel):
    """What a rule is made of: which events go to which service, and how."""

    event: EventPattern
    service: ServiceName
    method: Method = HttpMethod.POST
    endpoint: Text = Field(default="", max_length=2000)
    template: Text = Field(default="", max_length=65536)
    enabled: bool = True
    priority: int = Field(
        default=PRIORITY_DEFAULT,
        ge=PRIORITY_HIGHEST,
        le=PRIORITY_LOWEST,
        description="1 (first) to 5 (last); a backlog is served in priority order.",
    )
    order_key: OrderKey | None = Field(
        default=None,
        description="A dotted path into the event (data.user_id): deliveries with the same "
        "value reach the service in the order they were emitted. Events without it share "
        "one lane.",
    )


class RuleIn(RuleFields):
    """A rule as an operator creates it; its template must be able to render JSON."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _renders_json(self) -> Self:
        """Refuse a template that cannot render JSON, or a GET whose payload is no object."""
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
    priority: int | None = Field(default=None, ge=PRIORITY_HIGHEST, le=PRIORITY_LOWEST)
    order_key: OrderKey | None = Field(default=None, description="null removes ordering.")


class Rule(RuleFields):
    """A stored rule (not re-checked: a bad template fails its deliveries, not the index)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: datetime
    updated_at: datetime
