"""Planning an event and making each delivery's first attempt in one local activity.

An event's commonest path is one plan and one healthy first attempt per delivery. Run apart,
they are two local activities: two round trips between the workflow and the activity
worker, two markers in the history, the plan encoded and decoded twice. Together they cost
the worker about a tenth less per event (bench/results.md, issue 16). Nothing else changes:
each attempt is the same DeliveryAttempt, logged the same way, and the workflow reads its
outcome as if its own local activity had returned or raised it.
"""

import asyncio
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.delivery import DeliveryActivities
from activities.store import StoreActivities
from hub.core.models import (
    AttemptError,
    Delivery,
    DispatchInput,
    FirstAttempt,
    PlannedDispatch,
    ServiceType,
)


class DispatchActivities:
    """The plan (StoreActivities) and the first attempts (DeliveryActivities) together."""

    def __init__(self, planner: StoreActivities, deliveries: DeliveryActivities) -> None:
        self._planner = planner
        self._deliveries = deliveries

    @activity.defn(name="plan_and_send")
    async def plan_and_send(self, dispatch: DispatchInput, started: datetime) -> PlannedDispatch:
        """Plan the event, then make the first attempt of every delivery that may go at
        once (``started``: the workflow's start, which bounds the log lookups).

        Only the plan may raise (and be retried: nothing was sent yet). Once a request may
        have left, every outcome is returned as data, so a retry never sends it again.
        """
        plan = await self._planner.plan(dispatch)
        ready = [d for d in plan.deliveries if d.template_error is None and d.lane is None]
        first = {"first_attempt": 1, "workflow_started": started}
        attempts = await asyncio.gather(*(self._first(d.model_copy(update=first)) for d in ready))
        made = dict(zip((d.id for d in ready), attempts, strict=True))
        return PlannedDispatch(plan=plan, first=made)

    async def _first(self, delivery: Delivery) -> FirstAttempt:
        send = (
            self._deliveries.deliver_http
            if delivery.service_type is ServiceType.HTTP
            else self._deliveries.deliver_amqp
        )
        try:
            return await send(delivery)
        except ApplicationError as err:
            delay = err.next_retry_delay
            return AttemptError(
                type=err.type or type(err).__name__,
                message=err.message,
                details=list(err.details),
                non_retryable=err.non_retryable,
                next_retry_seconds=None if delay is None else delay.total_seconds(),
            )
        except Exception as err:  # the workflow tries again as a regular activity
            activity.logger.exception("first attempt of delivery %s failed", delivery.id)
            return AttemptError(type=type(err).__name__, message=str(err) or type(err).__name__)
