"""DispatchEventWorkflow: one workflow per event, fanning out to every matching rule."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.delivery import Failure, send

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from hub.core.models import (
        DeadLetter,
        Delivery,
        DeliveryOutcome,
        DeliveryStatus,
        DispatchInput,
        DispatchResult,
        Event,
        Outcome,
        summarize,
    )
    from hub.core.visibility import HUB_OUTCOME, HUB_SERVICES

PLAN_TIMEOUT = timedelta(seconds=30)
DEAD_LETTER_TIMEOUT = timedelta(seconds=30)
# Compensation must not be lost: retry until the database is back, at a calm pace.
DEAD_LETTER_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


@workflow.defn
class DispatchEventWorkflow:
    """Deliver one event to each matching service; dead-letter what cannot be delivered."""

    @workflow.run
    async def run(self, dispatch: DispatchInput) -> DispatchResult:
        event = dispatch.event
        plan = await workflow.execute_local_activity_method(
            StoreActivities.plan, dispatch, start_to_close_timeout=PLAN_TIMEOUT
        )
        if not plan.deliveries:
            workflow.upsert_search_attributes([HUB_OUTCOME.value_set(Outcome.NO_MATCH.value)])
            return DispatchResult(event_id=event.id, outcome=Outcome.NO_MATCH)

        services = sorted({d.service for d in plan.deliveries})
        # The emitter set HubServices from its own index; correct it only if rules changed.
        if workflow.info().typed_search_attributes.get(HUB_SERVICES) != services:
            workflow.upsert_search_attributes([HUB_SERVICES.value_set(services)])
        outcomes = await asyncio.gather(*(self._deliver(event, d) for d in plan.deliveries))

        outcome = summarize(outcomes)
        workflow.upsert_search_attributes([HUB_OUTCOME.value_set(outcome.value)])
        return DispatchResult(event_id=event.id, outcome=outcome, deliveries=list(outcomes))

    async def _deliver(self, event: Event, delivery: Delivery) -> DeliveryOutcome:
        if delivery.template_error is not None:
            return await self._dead_letter(event, delivery, delivery.template_error, attempts=0)
        result = await send(delivery)
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
        """The compensation step: the delivery goes to the DLQ with its rendered payload."""
        dlq_id = await workflow.execute_activity_method(
            StoreActivities.dead_letter,
            DeadLetter(
                delivery=delivery,
                event=event,
                workflow_id=workflow.info().workflow_id,
                error=error,
                error_type=error_type,
                attempts=attempts,
            ),
            start_to_close_timeout=DEAD_LETTER_TIMEOUT,
            retry_policy=DEAD_LETTER_RETRY,
        )
        return DeliveryOutcome.of(
            delivery, DeliveryStatus.DEAD_LETTERED, attempts, error=error, dlq_id=dlq_id
        )
