"""LaneWorkflow: the turn-taking that delivers one service's events with one key in order.

One lane per (service, key value), its id hub.core.control.lane_id. The emitter tickets
each event in its lanes (signal-with-start "enqueue") before it starts the event's workflow,
so a lane's FIFO is the emission order. The lane gives its head a turn (signal "lane_turn"
to the event's workflow) and waits for "lane_done"; the event workflow then sends with its
usual retries and holds, and the lane moves on when it has been delivered or dead-lettered.
See docs/ordering.md.
"""

from collections import deque
from contextlib import suppress
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.lanes import CLOSED, MISSING, LaneActivities
    from hub.core.models.lane import (
        DEPTH,
        ENQUEUE,
        LANE_DONE,
        LANE_TURN,
        LaneInput,
        Ticket,
    )

RECENT_DONE = 1000
"""Event ids remembered after their turn, so a duplicate emit is not served twice."""
MAX_CHECK = timedelta(minutes=5)
DESCRIBE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)


@workflow.defn
class LaneWorkflow:
    """A FIFO of tickets, served one at a time; completes after a quiet spell."""

    def __init__(self) -> None:
        self._queue: deque[Ticket] = deque()
        self._known: set[str] = set()
        self._finished: set[str] = set()
        self._done: deque[str] = deque(maxlen=RECENT_DONE)

    @workflow.signal(name=ENQUEUE)
    def enqueue(self, ticket: Ticket) -> None:
        """A ticket from the emitter; one already queued or recently served is dropped."""
        if ticket.event_id not in self._known:
            self._known.add(ticket.event_id)
            self._queue.append(ticket)

    @workflow.signal(name=LANE_DONE)
    def lane_done(self, event_id: str) -> None:
        """An event's workflow finished its deliveries in this lane (or had none)."""
        self._finished.add(event_id)

    @workflow.query(name=DEPTH)
    def depth(self) -> int:
        """Tickets waiting, the head included."""
        return len(self._queue)

    @workflow.run
    async def run(self, lane: LaneInput) -> int:
        """Serve tickets until the lane has been idle for ``limits.idle_seconds``; return how many
        this run served."""
        for event_id in lane.done:
            self._remember(event_id)
        for ticket in lane.queue:
            self.enqueue(ticket)
        self._finished.update(lane.finished)
        served = 0
        while True:
            if not self._queue:
                with suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: bool(self._queue),
                        timeout=timedelta(seconds=lane.limits.idle_seconds),
                    )
            if not self._queue:
                # A ticket signalled while this run completes makes the server refuse the
                # completion and replay the task with it, so none is lost (docs/ordering.md).
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._queue:
                    return served
                continue
            if served >= lane.limits.max_tickets or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry(lane))
            head = self._queue[0]
            await self._serve(lane, head)
            self._queue.popleft()
            self._finished.discard(head.event_id)
            self._remember(head.event_id)
            served += 1

    def _remember(self, event_id: str) -> None:
        if len(self._done) == self._done.maxlen:
            self._known.discard(self._done[0])
        self._done.append(event_id)
        self._known.add(event_id)

    def _carry(self, lane: LaneInput) -> LaneInput:
        queued = {t.event_id for t in self._queue}
        return lane.model_copy(
            update={
                "queue": list(self._queue),
                "finished": sorted(self._finished & queued),
                "done": list(self._done),
            }
        )

    async def _serve(self, lane: LaneInput, head: Ticket) -> None:
        """Give the head its turn and wait until it is done, or its workflow is gone."""
        first_try = workflow.now()
        check = timedelta(seconds=lane.limits.check_seconds)
        retry = timedelta(milliseconds=200)
        turned = False
        refused = 0
        while head.event_id not in self._finished:
            if not turned:
                turned = await self._turn(lane.lane, head)
                refused += 0 if turned else 1
            wait = check if turned else retry
            try:
                await workflow.wait_condition(lambda: head.event_id in self._finished, timeout=wait)
                return
            except TimeoutError:
                pass
            if turned:
                check = min(check * 2, MAX_CHECK)
            else:
                retry = min(retry * 2, check)
                if refused < 2:
                    continue  # the emitter starts the workflow right after the ticket
            state = await workflow.execute_local_activity_method(
                LaneActivities.workflow_state,
                head.workflow_id,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=DESCRIBE_RETRY,
            )
            late = workflow.now() - first_try > timedelta(seconds=lane.limits.start_grace_seconds)
            if state == CLOSED or (state == MISSING and late):
                if head.event_id not in self._finished:
                    workflow.logger.warning(
                        "lane %s skips event %s: its workflow %s is %s",
                        lane.lane,
                        head.event_id,
                        head.workflow_id,
                        state,
                    )
                return

    async def _turn(self, lane: str, head: Ticket) -> bool:
        """Tell the head's workflow it may send; False if it does not exist (yet) or ended."""
        try:
            await workflow.get_external_workflow_handle(head.workflow_id).signal(LANE_TURN, lane)
        except FailureError:
            return False
        return True
