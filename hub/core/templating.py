"""Payload templates: ``{{path}}`` placeholders over an event, rendered to JSON text.

A placeholder inside a JSON string literal inserts the value's text, JSON-escaped
(``"Hello {{data.name}}"``); anywhere else it inserts the value as JSON (``{"id": {{data.id}}}``
gives a number, a string gets its quotes). Paths start at the event (``id``, ``name``,
``occurred_at``, ``data``); a path whose first segment is none of those is looked up in
``data``, so ``{{user.id}}`` means ``{{data.user.id}}``. A missing value is ``null`` (``""``
inside a string). Values are inserted once and never scanned again. The result must be valid
JSON; an empty template means the whole event.

With ``max_bytes``, the UTF-8 size of the output is counted while it is built, and rendering
stops with ``PayloadTooLarge`` as soon as it passes the limit: a template that repeats a large
value many times never materialises more than about ``max_bytes`` plus one value.
"""

import json
import re
from typing import Any

from hub.core.models.event import Event

_PATH = re.compile(r"[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*")
_EVENT_FIELDS = ("id", "name", "occurred_at", "data")
_MISSING = object()
PAYLOAD_LIMIT_SETTING = "HUB_MAX_PAYLOAD_BYTES"


class TemplateError(ValueError):
    """The template is malformed or does not render valid JSON."""


class PayloadTooLarge(TemplateError):
    """A rendering over the payload size limit: at least ``size`` bytes, ``limit`` allowed."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"rendered payload is over {limit} bytes (at least {size}), "
            f"the limit is {PAYLOAD_LIMIT_SETTING}={limit}"
        )
        self.size = size
        self.limit = limit

    def __reduce__(self) -> tuple[type["PayloadTooLarge"], tuple[int, int]]:
        return (type(self), (self.size, self.limit))


def event_context(event: Event) -> dict[str, Any]:
    """The values a template can reach, as JSON types."""
    return event.model_dump(mode="json")


def render(template: str, event: Event, *, max_bytes: int | None = None) -> str:
    """Render a template against an event; raise TemplateError if the result is not JSON.

    With ``max_bytes``, raise PayloadTooLarge as soon as the output passes that many UTF-8
    bytes, without building the rest of it; exactly ``max_bytes`` is accepted.
    """
    context = event_context(event)
    budget = _Budget(max_bytes)
    if not template.strip():
        whole = _compact(context)
        budget.spend(_utf8_len(whole))
        return whole
    rendered = _substitute(template, context, budget)
    try:
        json.loads(rendered)
    except json.JSONDecodeError as err:
        raise TemplateError(
            f"template renders invalid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    return rendered


def check(template: str) -> str:
    """Raise TemplateError if the template cannot render JSON for any event.

    Every placeholder is rendered as missing (null or ""), which keeps the JSON structure
    the template would have for a real event. Returns that rendering.
    """
    return render(template, Event(id="check", name="check")).lstrip()


class _Budget:
    """Counts output bytes against an optional limit; raises PayloadTooLarge past it."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, size: int) -> None:
        self.used += size
        if self.limit is not None and self.used > self.limit:
            raise PayloadTooLarge(self.used, self.limit)


def _substitute(template: str, context: dict[str, Any], budget: _Budget) -> str:
    out: list[str] = []
    # Each distinct placeholder is encoded (and measured) once, however often it repeats.
    encoded: dict[tuple[str, bool], tuple[str, int]] = {}
    position = 0
    for start, path, in_string in _scan(template):
        literal = template[position:start]
        budget.spend(_utf8_len(literal))
        out.append(literal)
        key = (path, in_string)
        if key not in encoded:
            text = _encode(_lookup(context, path), in_string)
            encoded[key] = (text, _utf8_len(text))
        text, size = encoded[key]
        budget.spend(size)
        out.append(text)
        position = template.index("}}", start) + 2
    tail = template[position:]
    budget.spend(_utf8_len(tail))
    out.append(tail)
    return "".join(out)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _scan(template: str) -> list[tuple[int, str, bool]]:
    """Find placeholders as (offset, path, inside a JSON string literal)."""
    found: list[tuple[int, str, bool]] = []
    in_string = False
    i = 0
    while i < len(template):
        char = template[i]
        if char == "\\" and in_string:
            i += 2
            continue
        if template.startswith("{{", i):
            end = template.find("}}", i + 2)
            if end < 0:
                raise TemplateError(f"unclosed placeholder at offset {i}")
            path = template[i + 2 : end].strip()
            if not _PATH.fullmatch(path):
                raise TemplateError(f"invalid placeholder {{{{{path}}}}} at offset {i}")
            found.append((i, path, in_string))
            i = end + 2
            continue
        if char == '"':
            in_string = not in_string
        i += 1
    return found


def _lookup(context: dict[str, Any], path: str) -> Any:
    segments = path.split(".")
    value: Any = context if segments[0] in _EVENT_FIELDS else context["data"]
    for segment in segments:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
    return value


def _encode(value: Any, in_string: bool) -> str:
    if in_string:
        if value is _MISSING:
            return ""
        text = value if isinstance(value, str) else _compact(value)
        return json.dumps(text, ensure_ascii=False)[1:-1]
    if value is _MISSING:
        return "null"
    return _compact(value)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
