"""Held and lane counts for the operator's views: a number, or None when Temporal cannot say.

``hub service show``, the API and the console show how many deliveries wait; a view must
still render while Temporal is down, so every failure (unreachable, a visibility store that
does not know HubHeld yet, a slow answer) is "unknown", never an error.
"""

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from temporalio.client import Client

from hub.core.control import HoldReason
from hub.engine.holds import count_held, count_in_lanes

log = logging.getLogger(__name__)

COUNT_TIMEOUT = 5.0
"""Seconds a view waits for visibility before it shows the count as unknown."""
LIST_CONCURRENCY = 8

T = TypeVar("T")


@dataclass(frozen=True)
class HeldCounts:
    """A service's held deliveries: in all, and per HoldReason (every reason, zeros too)."""

    total: int
    by_reason: dict[str, int] = field(default_factory=dict)


async def _or_none(call: Awaitable[T]) -> T | None:
    """The call's answer, or None when Temporal fails or is too slow to give one."""
    try:
        return await asyncio.wait_for(call, COUNT_TIMEOUT)
    except Exception as err:  # any failure means "unknown" in a view
        log.debug("held count unknown: %s: %s", type(err).__name__, err)
        return None


async def held_counts(
    temporal: Client | None,
    service: str,
    *,
    by_reason: bool = True,
) -> HeldCounts | None:
    """How many deliveries to ``service`` are held (per reason too, unless told not to)."""
    if temporal is None:
        return None

    async def counts() -> HeldCounts:
        total = await count_held(temporal, service)
        if not by_reason:
            return HeldCounts(total)
        reasons = list(HoldReason)
        found = await asyncio.gather(*(count_held(temporal, service, r) for r in reasons))
        return HeldCounts(total, {r.value: n for r, n in zip(reasons, found, strict=True)})

    return await _or_none(counts())


async def held_totals(temporal: Client | None, services: list[str]) -> dict[str, int | None]:
    """Each service's held total (None when unknown), a few queries at a time, for lists."""
    if temporal is None or not services:
        return dict.fromkeys(services)
    limit = asyncio.Semaphore(LIST_CONCURRENCY)

    async def one(name: str) -> int | None:
        async with limit:
            return await _or_none(count_held(temporal, name))

    totals = await asyncio.gather(*(one(name) for name in services))
    return dict(zip(services, totals, strict=True))


async def lane_depth(temporal: Client | None, rule_id: int) -> int | None:
    """How many of a rule's deliveries wait in ordered lanes (None when unknown)."""
    if temporal is None:
        return None
    return await _or_none(count_in_lanes(temporal, rule_id))
