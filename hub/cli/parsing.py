"""Turning option text into values, with errors that name the option."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from hub.cli.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` as a JSON object; ``what`` (the option) is named when it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{what} is not valid JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return value


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (or plain seconds) as a timedelta."""
    value, unit = text[:-1], text[-1:]
    if unit.isdigit():
        value, unit = text, "s"
    if unit not in _UNITS or not value.isdigit():
        raise UsageError(f"invalid duration {text!r}: use a number and s, m, h, d or w")
    return timedelta(seconds=int(value) * _UNITS[unit])


def read_template(value: str) -> str:
    """A template given inline, or as @path to a file."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text()
        except OSError as error:
            raise UsageError(f"cannot read template file {path}: {error.strerror}") from None
    return value


def given(**options: object) -> dict[str, object]:
    """The options the user actually gave (Typer passes None for the others)."""
    return {key: value for key, value in options.items() if value is not None}
