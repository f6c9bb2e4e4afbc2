"""Events: what producers emit, and the JSON they may carry."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,199}$")]
EventName = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s*\x00]+$")
]
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00]+$")
]
MAX_DATA_DEPTH = 64
"""Deepest JSON nesting accepted in event data (the workflow's JSON encoder stops near 250)."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL (PostgreSQL refuses it) and lone surrogates (they are not UTF-8, so not JSON)."""


def check_json_value(value: object) -> None:
    """Refuse JSON the hub cannot carry: too deep to encode, NUL (PostgreSQL jsonb refuses
    it) or a lone surrogate (no UTF-8 encoding exists for it)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise ValueError(
                    "text must not contain NUL characters (\\u0000) or lone surrogates"
                )
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
