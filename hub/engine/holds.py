"""Held deliveries, seen from outside their workflows: counted and woken through visibility.

A workflow that holds a delivery sets HubHeld (hub.core.control.held_tags); counting them
is one visibility query. Waking them (on resume, when a circuit closes) signals each; a
workflow that starts holding just after the list still wakes on its own timer.
"""

import asyncio
import logging

from temporalio.client import Client
from temporalio.service import RPCError

from hub.core.control import WAKE_SIGNAL, HoldReason
from hub.core.visibility import HUB_HELD

log = logging.getLogger(__name__)

WAKE_CONCURRENCY = 16


def held_query(tag: str) -> str:
    """Running workflows holding a delivery with this HubHeld tag."""
    escaped = tag.replace("\\", "\\\\").replace("'", "\\'")
    return f"{HUB_HELD.name} = '{escaped}' AND ExecutionStatus = 'Running'"


async def count_held(temporal: Client, service: str, reason: HoldReason | None = None) -> int:
    """How many workflows hold a delivery to ``service`` (for ``reason``, if given)."""
    tag = service if reason is None else f"{service}:{reason.value}"
    counted = await temporal.count_workflows(held_query(tag))
    return counted.count


async def count_in_lanes(temporal: Client, rule_id: int) -> int:
    """How many of a rule's deliveries wait for their turn in an ordered lane."""
    counted = await temporal.count_workflows(held_query(f"rule:{rule_id}:lane"))
    return counted.count


async def wake_held(temporal: Client, service: str, reason: HoldReason | None = None) -> int:
    """Signal every workflow holding a delivery to ``service`` to try again now; how many.

    The woken deliveries take slots at the service's release rate (workflows.delivery), so
    a resume is not a stampede. A workflow that ended meanwhile is skipped.
    """
    tag = service if reason is None else f"{service}:{reason.value}"
    limit = asyncio.Semaphore(WAKE_CONCURRENCY)
    woken = 0

    async def wake(workflow_id: str, run_id: str | None) -> None:
        nonlocal woken
        async with limit:
            try:
                handle = temporal.get_workflow_handle(workflow_id, run_id=run_id)
                await handle.signal(WAKE_SIGNAL, service)
                woken += 1
            except RPCError as err:
                log.debug("not woken: %s (%s)", workflow_id, err)

    tasks = [
        asyncio.create_task(wake(execution.id, execution.run_id))
        async for execution in temporal.list_workflows(held_query(tag))
    ]
    await asyncio.gather(*tasks)
    return woken
