"""DispatchEventWorkflow: one workflow per event, fanning out to every matching rule."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.bookkeeping import STORE_RETRY, STORE_TIMEOUT, bookkeeping
from workflows.delivery import ACTIVITY_MARGIN, Failure, Holds, activity_cause, send
from workflows.lane_turns import LaneTurns

with workflow.unsafe.imports_passed_through():
    from activities.dispatch import DispatchActivities
    from activities.store import StoreActivities
    from hub.core.control import WAKE_SIGNAL
    from hub.core.models import (
        DeadLetter,
        Delivery,
        DeliveryOutcome,
        DeliveryPlan,
        DeliveryStatus,
        DispatchInput,
        DispatchResult,
        Event,
        FirstAttempt,
        Outcome,
        summarize,
    )
    from hub.core.models.lane import LANE_TURN
    from hub.core.models.service import MAX_TIMEOUT
    from hub.core.visibility import HUB_OUTCOME, HUB_SERVICES, fit_keyword_list

PLAN_AND_SEND = "plan-and-send"
"""The patch that planned and made the first attempts in one local activity; histories from
before it planned alone, and replay as they ran."""
PLAN_AND_SEND_TIMEOUT = STORE_TIMEOUT + timedelta(seconds=MAX_TIMEOUT) + ACTIVITY_MARGIN
"""The plan's time, and the slowest service's timeout with the attempt's margin."""


async def _plan(dispatch: DispatchInput) -> tuple[DeliveryPlan, dict[str, FirstAttempt]]:
    """The event's deliveries, and the first attempts made with the plan, by delivery id."""
    if not workflow.patched(PLAN_AND_SEND):
        return await bookkeeping(StoreActivities.plan, dispatch, local=True), {}
    planned = await workflow.execute_local_activity_method(
        DispatchActivities.plan_and_send,
        args=[dispatch, workflow.info().workflow_start_time],
        start_to_close_timeout=PLAN_AND_SEND_TIMEOUT,
        retry_policy=STORE_RETRY,
    )
    return planned.plan, planned.first


@workflow.defn
class DispatchEventWorkflow:
    """Deliver one event to each matching service; dead-letter what cannot be delivered."""

    def __init__(self) -> None:
        self._data_ref: str | None = None
        self._holds = Holds()
        self._lanes = LaneTurns(self._holds)

    @workflow.signal(name=LANE_TURN)
    def lane_turn(self, lane: str) -> None:
        """The ordered lane says this event's delivery in it may go (workflows.lane)."""
        self._lanes.turn(lane)

    @workflow.signal(name=WAKE_SIGNAL)
    def wake(self, service: str) -> None:
        """A held service may go on (resumed, circuit closed or reset): check now."""
        self._holds.wake(service)

    @workflow.run
    async def run(self, dispatch: DispatchInput) -> DispatchResult:
        event = dispatch.event
        self._data_ref = dispatch.data_ref
        plan, first = await _plan(dispatch)
        await self._lanes.open(event.id, dispatch.lanes, plan.deliveries)
        if not plan.deliveries:
            workflow.upsert_search_attributes([HUB_OUTCOME.value_set(Outcome.NO_MATCH.value)])
            return DispatchResult(event_id=event.id, outcome=Outcome.NO_MATCH)

        services = fit_keyword_list(sorted({d.service for d in plan.deliveries}))
        # The emitter set HubServices from its own index; correct it only if rules changed.
        if workflow.info().typed_search_attributes.get(HUB_SERVICES) != services:
            workflow.upsert_search_attributes([HUB_SERVICES.value_set(services)])
        outcomes = await asyncio.gather(
            *(self._deliver(event, d, first.get(d.id)) for d in plan.deliveries)
        )

        outcome = summarize(outcomes)
        workflow.upsert_search_attributes([HUB_OUTCOME.value_set(outcome.value)])
        return DispatchResult(event_id=event.id, outcome=outcome, deliveries=list(outcomes))

    async def _deliver(
        self, event: Event, delivery: Delivery, first: FirstAttempt | None
    ) -> DeliveryOutcome:
        if not await self._lanes.take(delivery):
            return await self._deliver_now(event, delivery, first)
        outcome = await self._deliver_now(event, delivery, first)
        await self._lanes.release(delivery)
        return outcome

    async def _deliver_now(
        self, event: Event, delivery: Delivery, first: FirstAttempt | None
    ) -> DeliveryOutcome:
        if delivery.template_error is not None:
            return await self._dead_letter(event, delivery, delivery.template_error, attempts=0)
        result = await send(delivery, self._holds, first)
        if isinstance(result, Failure):
            return await self._dead_letter(
                event, delivery, result.error, result.attempts, result.error_type
            )
        return DeliveryOutcome.of(delivery, DeliveryStatus.DELIVERED, result.attempt)

    async def _dead_letter(
        self,
        event: Event,
        delivery: Delivery,
        error: str,
        attempts: int,
        error_type: str | None = None,
    ) -> DeliveryOutcome:
        """The compensation step: the delivery goes to the DLQ with its rendered payload.

        If the DLQ row cannot be written (the database refuses it, or stays down past the
        retries), the delivery still ends dead-lettered, and this workflow's result and
        history (event, payload, both errors) are where it is found.
        """
        dead = DeadLetter(
            delivery=delivery,
            event=event,
            data_ref=self._data_ref,
            workflow_id=workflow.info().workflow_id,
            error=error,
            error_type=error_type,
            attempts=attempts,
        )
        try:
            dlq_id = await bookkeeping(StoreActivities.dead_letter, dead)
        except ActivityError as err:
            error = f"{error} (the DLQ row could not be written: {activity_cause(err)})"
            return DeliveryOutcome.of(delivery, DeliveryStatus.DEAD_LETTERED, attempts, error=error)
        return DeliveryOutcome.of(
            delivery, DeliveryStatus.DEAD_LETTERED, attempts, error=error, dlq_id=dlq_id
        )
