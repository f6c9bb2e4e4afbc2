"""LaneTurns: the event workflow's side of its ordered lanes (workflows.lane).

A helper of DispatchEventWorkflow, not a workflow: the worker passes this module through
the sandbox (like workflows.delivery), so it is imported once, not for every new run.
"""

import asyncio

from temporalio import workflow
from temporalio.exceptions import FailureError

from hub.core.control import HoldReason, held_tags
from hub.core.models import Delivery
from hub.core.models.lane import LANE_DONE
from workflows.delivery import Holds


class LaneTurns:
    """The event workflow's side of its lanes: wait for the turn, say when done.

    A delivery whose lane the emitter ticketed waits for its turn (HubOutcome "held",
    HubHeld naming the lane hold, through ``held``); one whose lane was not ticketed (an
    emitter with an older rule index) is sent unordered, with a warning.
    """

    def __init__(self, held: Holds) -> None:
        self._held = held
        self._turns: set[str] = set()
        self._ticketed: set[str] = set()
        self._left: dict[str, int] = {}
        self._warned = False

    def turn(self, lane: str) -> None:
        """The lane's signal: this event is its head."""
        self._turns.add(lane)

    async def open(self, event_id: str, ticketed: list[str], deliveries: list[Delivery]) -> None:
        """Count each ticketed lane's deliveries; a lane with none is done at once."""
        self._ticketed = set(ticketed)
        for delivery in deliveries:
            if delivery.lane in self._ticketed:
                self._left[delivery.lane] = self._left.get(delivery.lane, 0) + 1
        unused = [lane for lane in ticketed if lane not in self._left]
        await asyncio.gather(*(self._done(lane, event_id) for lane in unused))

    async def take(self, delivery: Delivery) -> bool:
        """Wait for the delivery's turn in its lane; False if it is not ordered here."""
        lane = delivery.lane
        if lane is None:
            return False
        if lane not in self._ticketed:
            if not self._warned:
                self._warned = True
                workflow.logger.warning(
                    "delivery %s is sent unordered: its lane %s was not ticketed (an emitter "
                    "with an older rule index, or a replay)",
                    delivery.id,
                    lane,
                )
            return False
        if lane not in self._turns:
            key = f"lane:{delivery.id}"
            self._held.enter(key, held_tags(delivery.service, HoldReason.LANE, delivery.rule_id))
            await workflow.wait_condition(lambda: lane in self._turns)
            self._held.leave(key)
        return True

    async def release(self, delivery: Delivery) -> None:
        """The delivery is delivered or dead-lettered: the lane may go on once all of this
        event's deliveries in it are."""
        assert delivery.lane is not None
        self._left[delivery.lane] -= 1
        if self._left[delivery.lane] == 0:
            await self._done(delivery.lane, delivery.event_id)

    async def _done(self, lane: str, event_id: str) -> None:
        try:
            await workflow.get_external_workflow_handle(lane).signal(LANE_DONE, event_id)
        except FailureError as err:
            workflow.logger.warning("lane %s could not be told %s is done: %s", lane, event_id, err)
