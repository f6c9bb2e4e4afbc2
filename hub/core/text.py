"""Cleaning text that comes from outside (response bodies, error messages, header values)
before it is stored: PostgreSQL refuses NUL in text, and one oversized value must not bloat
every row, history or page that shows it."""

import re
from typing import Annotated

from pydantic import BeforeValidator

MAX_TEXT_CHARS = 4000
"""The longest error message or excerpt kept; the rest is cut with a marker."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_TRUNCATED = " … (truncated)"


def clean_text(value: str | bytes, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Text safe to store: valid UTF-8, no NUL or other control characters (tabs and
    newlines stay), at most ``max_chars`` characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = _CONTROL.sub("", value)
    if len(value) > max_chars:
        value = value[: max_chars - len(_TRUNCATED)] + _TRUNCATED
    return value


def _clean_optional(value: object) -> object:
    return clean_text(value) if isinstance(value, str | bytes) else value


CleanText = Annotated[str, BeforeValidator(_clean_optional)]
"""A model field of outside text, cleaned on the way in."""
