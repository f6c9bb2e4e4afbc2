"""AMQP delivery (publish with confirms) and response-queue consumption, over aio-pika."""

import asyncio
import json
import time
from datetime import UTC, datetime

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from temporalio import activity

from activities.attempts import EXCERPT_CHARS, DeliveryAttempts, DeliveryError, delivery_error
from hub.amqp import AmqpPool, AmqpTarget, scrub
from hub.models import (
    AttemptResult,
    ConsumeRequest,
    ConsumeResult,
    Delivery,
    Direction,
    LogEntryIn,
    LogStatus,
    ResponseQueue,
    Service,
)
from hub.rule_index import RuleIndex
from hub.secrets import SecretBox, SecretKeyError
from hub.store import Store

# Failures of the broker or the link to it: the breaker counts them.
BROKER_ERRORS = (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError)


def dlq_name(queue: str) -> str:
    """Where unprocessable responses go: ``<response_queue>.dlq``, declared by the hub."""
    return f"{queue}.dlq"


class AmqpActivities:
    """Publishes deliveries and drains response queues through the worker's AMQP pool."""

    def __init__(
        self,
        attempts: DeliveryAttempts,
        store: Store,
        index: RuleIndex,
        pool: AmqpPool,
        box: SecretBox,
    ) -> None:
        self._attempts = attempts
        self._store = store
        self._index = index
        self._pool = pool
        self._box = box

    def _broker_url(self, service: Service) -> str:
        """The service's URL with its password (stored encrypted) put back."""
        return self._box.open(service.secret_url) if service.secret_url else service.base_url

    @activity.defn(name="deliver_amqp")
    async def publish(self, delivery: Delivery) -> AttemptResult:
        """Publish one persistent JSON message and wait for the broker's confirm."""
        log, service = await self._attempts.begin(delivery, "PUBLISH")
        attempt = log.attempt or 1
        try:
            url = self._broker_url(service)
        except SecretKeyError as err:
            raise await self._attempts.reject(log, str(err), retryable=False) from None
        target = AmqpTarget.from_url(url)
        routing_key = target.routing_key_for(delivery.endpoint)
        log.target = target.describe(routing_key)
        if delivery.payload is None or not routing_key:
            reason = "no routing key: set the rule's endpoint or the URL's routing_key"
            raise await self._attempts.reject(
                log, reason if delivery.payload is not None else "no payload", retryable=False
            )
        permit = await self._attempts.admit(log, service)

        started = time.perf_counter()
        error: DeliveryError | None = None
        healthy = True
        try:
            async with asyncio.timeout(service.timeout):
                if target.queue_declare:
                    await self._declare(target, routing_key, service.timeout)
                if service.response_queue:
                    # Replies to a queue that does not exist yet would be dropped.
                    await self._pool.queue(
                        target.connection_url,
                        service.response_queue,
                        connect_timeout=service.timeout,
                    )
                channel = await self._pool.channel(
                    target.connection_url, connect_timeout=service.timeout
                )
                exchange = (
                    await channel.get_exchange(target.exchange, ensure=False)
                    if target.exchange
                    else channel.default_exchange
                )
                await exchange.publish(
                    aio_pika.Message(
                        body=delivery.payload.encode(),
                        content_type="application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=delivery.id,
                        correlation_id=delivery.id,
                        reply_to=service.response_queue,
                        timestamp=datetime.now(UTC),
                        headers={
                            "x-hub-event": delivery.event_name,
                            "x-hub-event-id": delivery.event_id,
                            "x-hub-attempt": attempt,
                        },
                    ),
                    routing_key=routing_key,
                    mandatory=True,
                )
        except aiormq.exceptions.PublishError as err:
            # The broker is fine; nothing is bound to take the message.
            reason = getattr(err.message.delivery, "reply_text", "returned")
            message = f"unroutable: {reason} (exchange {target.exchange or '(default)'!r}, "
            error = delivery_error(f"{message}key {routing_key!r})", attempt, retryable=True)
        except BROKER_ERRORS as err:
            healthy = False
            text = scrub(f"{type(err).__name__}: {err}".rstrip(": "), url)
            if isinstance(err, TimeoutError | asyncio.TimeoutError):
                text = f"timed out after {service.timeout:g}s"
            error = delivery_error(text, attempt, retryable=True)
        log.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        await self._attempts.finish(log, service, permit, healthy=healthy, error=error)
        return AttemptResult(attempt=attempt, latency_ms=log.latency_ms)

    async def _declare(self, target: AmqpTarget, key: str, connect_timeout: float) -> None:
        """Make sure the URL's queue exists (durable if new), bound to a named exchange."""
        await self._pool.queue(
            target.connection_url,
            target.queue_declare,
            connect_timeout=connect_timeout,
            bind=(target.exchange, key) if target.exchange else None,
        )

    @activity.defn(name="consume_responses")
    async def consume(self, request: ConsumeRequest) -> ConsumeResult:
        """Drain up to max_messages replies: log each (correlated to its delivery), then ack.

        Nothing is acked before its log row is committed. A message that is not JSON is
        copied to ``<queue>.dlq`` (publisher-confirmed), logged, and rejected without requeue,
        so it can never block the queue. If logging fails, the message goes back to the queue.
        """
        source, max_messages = request.source, request.max_messages
        result = ConsumeResult(service=source.service, queue=source.queue)
        service = await self._index.service(source.service_id)
        if service is None:
            result.error = "service is disabled or was deleted"
            return result
        url = AmqpTarget.from_url(self._broker_url(service)).connection_url
        await self._pool.queue(url, dlq_name(source.queue), connect_timeout=service.timeout)
        queue = await self._pool.queue(url, source.queue, connect_timeout=service.timeout)
        channel = queue.channel
        while result.consumed + result.rejected < max_messages:
            message = await queue.get(no_ack=False, fail=False, timeout=service.timeout)
            if message is None:
                break
            try:
                if await self._take(channel, source, message):
                    result.consumed += 1
                else:
                    result.rejected += 1
            except BaseException:
                await message.nack(requeue=True)
                raise
            activity.heartbeat(result.consumed + result.rejected)
        return result

    async def _take(
        self, channel: AbstractChannel, source: ResponseQueue, message: AbstractIncomingMessage
    ) -> bool:
        """Log one reply and settle it; False when it was dead-lettered."""
        body = message.body.decode("utf-8", errors="replace")
        log = LogEntryIn(
            direction=Direction.IN,
            service=source.service,
            delivery_id=message.correlation_id,
            method="CONSUME",
            target=source.queue,
            status=LogStatus.OK,
            response_excerpt=body[:EXCERPT_CHARS] or None,
        )
        try:
            json.loads(message.body)
        except ValueError as err:
            log.status = LogStatus.FAILED
            log.error = f"not JSON ({err}); moved to {dlq_name(source.queue)}"
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body=message.body,
                    headers={**(message.headers or {}), "x-hub-error": log.error},
                    content_type=message.content_type,
                    correlation_id=message.correlation_id,
                    message_id=message.message_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=dlq_name(source.queue),
            )
            await self._store.add_inbound_log(log)
            await message.reject(requeue=False)
            return False
        await self._store.add_inbound_log(log)
        await message.ack()
        return True
