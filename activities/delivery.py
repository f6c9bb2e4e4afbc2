"""The delivery activities: one attempt each, through the transport the service needs."""

from temporalio import activity

from activities.attempt import DeliveryAttempt
from hub.core.control import HoldReason
from hub.core.models import AttemptResult, Delivery
from hub.transport.amqp import AmqpTransport
from hub.transport.http import HttpTransport


class DeliveryActivities:
    """Temporal's retry policy makes the next attempt; each activity makes one (or says
    to hold: ``held`` is the hold the workflow is in, if any, ``slot_at`` the rate slot it
    kept)."""

    def __init__(self, attempt: DeliveryAttempt, http: HttpTransport, amqp: AmqpTransport) -> None:
        self._attempt = attempt
        self._http = http
        self._amqp = amqp

    @activity.defn(name="deliver_http")
    async def deliver_http(
        self, delivery: Delivery, held: HoldReason | None = None, slot_at: float | None = None
    ) -> AttemptResult:
        """Send one HTTP request (the rule's method, the service's URL and auth)."""
        return await self._attempt.run(delivery, self._http, held, slot_at)

    @activity.defn(name="deliver_amqp")
    async def deliver_amqp(
        self, delivery: Delivery, held: HoldReason | None = None, slot_at: float | None = None
    ) -> AttemptResult:
        """Publish one persistent JSON message and wait for the broker's confirm."""
        return await self._attempt.run(delivery, self._amqp, held, slot_at)
