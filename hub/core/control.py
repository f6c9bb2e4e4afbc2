"""Delivery control, the pure part: priorities, rates, order keys and lanes, hold reasons.

Operators set these on rules (priority, order key) and services (weight, rate, max hold,
pause); the worker and the emitter read them from here, so both agree on a lane's name and
a rate's meaning.
"""

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator

PRIORITY_HIGHEST = 1
PRIORITY_LOWEST = 5
PRIORITY_DEFAULT = 3
"""Temporal's priority keys: 1 runs first; 3 is what a task without one gets."""

DEFAULT_MAX_HOLD = 86400.0
"""How long (seconds) a delivery may be held (paused, open circuit, rate) before the DLQ."""

MAX_RATE_PER_SECOND = 100_000.0

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute)\s*$")
_ORDER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
MISSING_KEY = "(missing)"
"""The lane key of an event that lacks the rule's order key: such events share one lane."""


def rate_per_second(rate: str) -> float:
    """``10/s`` -> 10.0, ``30/min`` -> 0.5; ValueError with the accepted forms otherwise."""
    found = _RATE.match(rate)
    if found is None:
        raise ValueError(f"invalid rate {rate!r}: use N/s or N/min, for example 10/s or 30/min")
    count = float(found.group(1))
    per_second = count if found.group(2).startswith("s") else count / 60.0
    if count <= 0 or per_second > MAX_RATE_PER_SECOND:
        raise ValueError(
            f"invalid rate {rate!r}: it must be above 0 and at most {MAX_RATE_PER_SECOND:g}/s"
        )
    return per_second


def _rate(value: str) -> str:
    """The canonical spelling of a valid rate (``10/s``, ``30/min``)."""
    rate_per_second(value)
    found = _RATE.match(value)
    assert found is not None
    count = found.group(1)
    return f"{count}/{'s' if found.group(2).startswith('s') else 'min'}"


Rate = Annotated[str, AfterValidator(_rate)]


def _order_key(path: str) -> str:
    if len(path) > 200 or not _ORDER_KEY.match(path):
        raise ValueError(
            f"invalid order key {path!r}: use a dotted path into the event, "
            "for example data.user_id"
        )
    return path


OrderKey = Annotated[str, AfterValidator(_order_key)]
"""A dotted path into the event (``data.user_id``, ``name``, ``data.items.0.sku``)."""


def order_value(path: str, event: dict[str, Any]) -> str:
    """The value at ``path`` in the event (its id, name and data), as lane key text.

    A missing path or a null gives MISSING_KEY; objects and lists are keyed by their JSON.
    """
    node: Any = event
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING_KEY
    if node is None:
        return MISSING_KEY
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, str | int | float):
        return str(node)
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def lane_id(service: str, key: str) -> str:
    """The workflow id of the lane that orders one service's deliveries with one key value.

    Readable when the key is short; a long key is cut and made unique by its digest.
    """
    if len(key) > 80:
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        key = f"{key[:60]}~{digest}"
    return f"lane:{service}:{key}"


class HoldReason(StrEnum):
    """Why a delivery waits without using an attempt."""

    PAUSED = "paused"
    CIRCUIT_OPEN = "circuit_open"
    RATE_LIMITED = "rate_limited"
    THROTTLED = "throttled"
    """The receiver answered 429 with Retry-After: the whole service slows down."""
    LANE = "lane"
    """Waiting for its turn in an ordered lane."""


def held_tags(service: str, reason: HoldReason, rule_id: int | None = None) -> list[str]:
    """The HubHeld search attribute values of a workflow holding a delivery to ``service``.

    ``service`` counts every held delivery of the service, ``service:reason`` one kind, and
    ``rule:ID:lane`` a rule's deliveries waiting in their lanes.
    """
    tags = [service, f"{service}:{reason.value}"]
    if rule_id is not None and reason is HoldReason.LANE:
        tags.append(f"rule:{rule_id}:lane")
    return tags


WAKE_SIGNAL = "wake"
"""The signal (its argument a service name) that ends a hold early: sent on resume, when a
circuit closes, and on a manual circuit reset."""
