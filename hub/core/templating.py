"""Payload templates: ``{{path}}`` placeholders over an event, rendered to JSON text.

A placeholder inside a JSON string literal inserts the value's text, JSON-escaped
(``"Hello {{data.name}}"``); anywhere else it inserts the value as JSON (``{"id": {{data.id}}}``
gives a number, a string gets its quotes). Paths start at the event (``id``, ``name``,
``occurred_at``, ``data``); a path whose first segment is none of those is looked up in
``data``, so ``{{user.id}}`` means ``{{data.user.id}}``. A missing value is ``null`` (``""``
inside a string). Values are inserted once and never scanned again. The result must be valid
JSON; an empty template means the whole event.
"""

import json
import re
from typing import Any

from hub.core.models.event import Event

_PATH = re.compile(r"[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*")
_EVENT_FIELDS = ("id", "name", "occurred_at", "data")
_MISSING = object()


class TemplateError(ValueError):
    """The template is malformed or does not render valid JSON."""


def event_context(event: Event) -> dict[str, Any]:
    """The values a template can reach, as JSON types."""
    return event.model_dump(mode="json")


def render(template: str, event: Event) -> str:
    """Render a template against an event; raise TemplateError if the result is not JSON."""
    context = event_context(event)
    if not template.strip():
        return _compact(context)
    rendered = _substitute(template, context)
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


def _substitute(template: str, context: dict[str, Any]) -> str:
    out: list[str] = []
    position = 0
    for start, path, in_string in _scan(template):
        out.append(template[position:start])
        value = _lookup(context, path)
        out.append(_encode(value, in_string))
        position = template.index("}}", start) + 2
    out.append(template[position:])
    return "".join(out)


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
