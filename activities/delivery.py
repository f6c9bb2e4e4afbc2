"""The delivery activities: one attempt each, through the transport the service needs."""

from temporalio import activity

from activities.attempt import DeliveryAttempt
from hub.core.models import AttemptResult, Delivery
from hub.transport.amqp import AmqpTransport
from hub.transport.http import HttpTransport


class DeliveryActivities:
    """Temporal's retry policy makes the next attempt; each activity makes one."""

    def __init__(self, attempt: DeliveryAttempt, http: HttpTransport, amqp: AmqpTransport) -> None:
        self._attempt = attempt
        self._http = http
        self._amqp = amqp

    @activity.defn(name="deliver_http")
    async def deliver_http(self, delivery: Delivery) -> AttemptResult:
        """Send one HTTP request (the rule's method, the service's URL and auth)."""
        return await self._attempt.run(delivery, self._http)

    @activity.defn(name="deliver_amqp")
    async def deliver_amqp(self, delivery: Delivery) -> AttemptResult:
        """Publish one persistent JSON message and wait for the broker's confirm."""
        return await self._attempt.run(delivery, self._amqp)
