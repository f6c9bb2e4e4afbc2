"""Draining AMQP response queues: every reply is logged (correlated to its delivery) before
it is acked; what cannot be read goes to ``<queue>.dlq``, never back to block the queue."""

import json

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from temporalio import activity

from hub.core.models import (
    EXCERPT_CHARS,
    ConsumeRequest,
    ConsumeResult,
    Direction,
    LogEntryIn,
    LogStatus,
    ResponseQueue,
    ServiceType,
)
from hub.runtime.metrics import HubMetrics
from hub.runtime.rule_index import RuleIndex
from hub.secrets import SecretBox
from hub.store import Store
from hub.transport.amqp import AmqpPool, AmqpTarget, dlq_name


class ResponseActivities:
    """Lists the response queues and drains them through the worker's AMQP pool."""

    def __init__(
        self, store: Store, index: RuleIndex, pool: AmqpPool, box: SecretBox, metrics: HubMetrics
    ) -> None:
        self._store = store
        self._index = index
        self._pool = pool
        self._box = box
        self._metrics = metrics

    @activity.defn(name="list_response_queues")
    async def response_queues(self) -> list[ResponseQueue]:
        """Enabled AMQP services with a response queue (from the cached index)."""
        snapshot = await self._index.refresh()
        return [
            ResponseQueue(service_id=s.id, service=s.name, queue=s.response_queue)
            for s in sorted(snapshot.services.values(), key=lambda s: s.name)
            if s.type is ServiceType.AMQP and s.response_queue
        ]

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
        url = AmqpTarget.from_url(self._box.credentials(service).url).connection_url
        try:
            await self._drain(url, source, max_messages, service.timeout, result)
        except aiormq.exceptions.ChannelNotFoundEntity as err:
            # The queue was deleted on the broker: declare it again on the next run.
            self._pool.forget(url, source.queue)
            self._pool.forget(url, dlq_name(source.queue))
            result.error = f"queue gone on the broker ({err}); declared again on the next run"
        return result

    async def _drain(
        self,
        url: str,
        source: ResponseQueue,
        max_messages: int,
        wait: float,
        result: ConsumeResult,
    ) -> None:
        """Take messages until max_messages or the queue is empty (``wait`` for each)."""
        await self._pool.queue(url, dlq_name(source.queue), connect_timeout=wait)
        queue = await self._pool.queue(url, source.queue, connect_timeout=wait)
        channel = queue.channel
        while result.consumed + result.rejected < max_messages:
            message = await queue.get(no_ack=False, fail=False, timeout=wait)
            if message is None:
                break
            try:
                taken = await self._take(channel, source, message)
            except BaseException:
                await message.nack(requeue=True)
                raise
            if taken:
                result.consumed += 1
            else:
                result.rejected += 1
            self._metrics.response(source.service, poisoned=not taken)
            activity.heartbeat(result.consumed + result.rejected)

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
            await self._store.log.add_inbound(log)
            await message.reject(requeue=False)
            return False
        await self._store.log.add_inbound(log)
        await message.ack()
        return True
