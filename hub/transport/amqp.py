"""AMQP delivery: broker URLs of services, one robust connection per broker per worker, and
publishing with confirms.

A service's ``base_url`` is an ``amqp://`` or ``amqps://`` URL whose query may carry
``exchange``, ``routing_key`` and ``queue_declare``; every other query parameter (heartbeat,
connection_timeout…) is passed to aio-pika. Credentials stay in the URL and are masked
wherever the URL or an error that may quote it is shown.

What the broker loses, the hub puts back:

* A connection the broker closed (restart, ``rabbitmqctl close_connection``, a dropped link)
  is reconnected by aio-pika's robust connection, which also reopens its channels. The pool
  waits for that (within the attempt's timeout) instead of handing out a closed channel, and
  replaces a channel that does not come back. After a reconnection, queues are checked again.
* A queue or binding the hub declared (``queue_declare``) that disappeared on the broker shows
  as a returned message (NO_ROUTE): the pool forgets it, declares and binds it again, and the
  message is published once more in the same attempt. A returned message was routed nowhere,
  so the second publish cannot duplicate it.
"""

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from opentelemetry.trace import SpanKind
from yarl import URL

from hub.core.egress import EgressRefused
from hub.core.models import Delivery, Service, mask_url
from hub.core.signing import signature_headers
from hub.core.tracing import active_tracer, inject, span
from hub.secrets import Credentials
from hub.transport.base import Sent, Unsendable
from hub.transport.egress import EgressGuard, GuardedRobustConnection, GuardedTcp
from hub.transport.spans import amqp_attributes, record

HUB_PARAMS = ("exchange", "routing_key", "queue_declare")
# Failures of the broker or the link to it: the breaker counts them. aio-pika and aiormq
# report a connection or channel lost under a call with RuntimeError (ChannelInvalidStateError,
# "Connection was not opened", "<Connection …> closed"), as aio-pika's own reconnection
# loop counts it (aio_pika.exceptions.CONNECTION_EXCEPTIONS).
BROKER_ERRORS = (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError, RuntimeError)
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}
CHANNEL_RESTORE_SECONDS = 2.0
"""How long a reconnected connection's channel may take to be reopened before it is replaced."""


def dlq_name(queue: str) -> str:
    """Where unprocessable responses go: ``<response_queue>.dlq``, declared by the hub."""
    return f"{queue}.dlq"


@dataclass(frozen=True)
class AmqpTarget:
    """Where a service's messages go, parsed from its URL."""

    connection_url: str
    exchange: str
    routing_key: str
    queue_declare: str

    @classmethod
    def from_url(cls, url: str) -> "AmqpTarget":
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in HUB_PARAMS}
        rest = [(k, v) for k, v in query if k not in HUB_PARAMS]
        return cls(
            connection_url=parts._replace(query=urlencode(rest)).geturl(),
            exchange=ours.get("exchange", ""),
            routing_key=ours.get("routing_key", ""),
            queue_declare=ours.get("queue_declare", ""),
        )

    def routing_key_for(self, endpoint: str) -> str:
        """The rule's endpoint (without a leading /), else the URL's key, else the queue."""
        return endpoint.lstrip("/") or self.routing_key or self.queue_declare

    def describe(self, routing_key: str) -> str:
        """A secret-free description for logs: broker, exchange and routing key."""
        broker = mask_url(urlsplit(self.connection_url)._replace(query="").geturl())
        return f"{broker} exchange={self.exchange or '(default)'} key={routing_key}"


def scrub(text: str, url: str) -> str:
    """Remove the URL's password from a message (client libraries sometimes quote URLs)."""
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


@dataclass
class _Broker:
    connection: AbstractRobustConnection
    channel: AbstractRobustChannel | None = None


class AmqpPool:
    """One robust connection per broker URL, each with one confirming channel, reused.

    The old plugin opened a connection per message; here a worker opens one per broker and
    keeps it (aio-pika reconnects it). ``connections_opened`` counts real connects (not
    aio-pika's reconnections). Every connect, and every reconnect, goes through the egress
    guard.
    """

    def __init__(self, guard: EgressGuard, *, name: str = "temporal-hub") -> None:
        self._guard = guard
        self._name = name
        self._brokers: dict[str, _Broker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._known_queues: set[tuple[str, str]] = set()  # (broker URL, queue name)
        self._known_bindings: set[tuple[str, str, str, str]] = set()  # (+ exchange, key)
        self.connections_opened = 0

    async def channel(self, url: str, *, connect_timeout: float) -> AbstractRobustChannel:
        """An open channel with publisher confirms (unroutable messages raise).

        Never a closed one: while aio-pika reconnects a connection the broker closed, this
        waits for it (at most ``connect_timeout``, then TimeoutError).
        """
        if channel := self._open_channel(url):
            return channel
        async with self._locks.setdefault(url, asyncio.Lock()):
            broker = self._brokers.get(url)
            if broker is None or broker.connection.is_closed:
                connection = await self._connect(url, connect_timeout)
                self.connections_opened += 1
                broker = self._brokers[url] = _Broker(connection)
            async with asyncio.timeout(connect_timeout):
                await broker.connection.ready()  # at once, unless it is reconnecting
            if channel := await self._restored(broker):
                return channel
            broker.channel = await broker.connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            return broker.channel

    async def _restored(self, broker: _Broker) -> AbstractRobustChannel | None:
        """The broker's channel once aio-pika has reopened it after a reconnection; None
        (and the channel closed for good) if it is not back in time."""
        channel = broker.channel
        if channel is None:
            return None
        if channel.is_closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHANNEL_RESTORE_SECONDS):
                    await channel.ready()
        if not channel.is_closed:
            return channel
        broker.channel = None
        with contextlib.suppress(*BROKER_ERRORS):
            await channel.close()  # so that aio-pika stops restoring it
        return None

    async def _connect(self, url: str, connect_timeout: float) -> AbstractRobustConnection:
        """A robust connection to a checked address of the broker (EgressRefused before any
        socket is opened); its reconnections are checked again, and make the pool check the
        broker's queues again."""
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 5672)
        checked = await self._guard.addresses(parts.hostname or "", port)
        connection = GuardedRobustConnection(
            URL(url),
            GuardedTcp(self._guard, checked),
            client_properties={"connection_name": self._name},
        )
        try:
            await connection.connect(timeout=connect_timeout)
        except BaseException:
            # Also stops its reconnection task, which would otherwise keep trying.
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        connection.reconnect_callbacks.add(lambda _connection: self._forget_broker(url))
        return connection

    def _open_channel(self, url: str) -> AbstractRobustChannel | None:
        broker = self._brokers.get(url)
        if broker is None or broker.connection.is_closed:
            return None
        if broker.channel is None or broker.channel.is_closed:
            return None
        return broker.channel

    def _forget_broker(self, url: str) -> None:
        """Check every queue and binding on this broker again (it may have restarted)."""
        self._known_queues = {known for known in self._known_queues if known[0] != url}
        self._known_bindings = {known for known in self._known_bindings if known[0] != url}

    def forget(self, url: str, name: str, *, bind: tuple[str, str] | None = None) -> None:
        """Stop trusting that a queue (and its binding) exists: the next ``queue()`` checks
        with the broker, declares and binds again."""
        self._known_queues.discard((url, name))
        if bind is not None:
            self._known_bindings.discard((url, name, *bind))

    async def queue(
        self,
        url: str,
        name: str,
        *,
        connect_timeout: float,
        bind: tuple[str, str] | None = None,
    ) -> AbstractQueue:
        """An existing queue as it is (whatever its arguments), else a new durable one;
        bound to ``bind`` = (exchange, routing key) if given.

        Checked with the broker once (until ``forget`` or a reconnection), on a throwaway
        channel: a passive declare of a missing queue closes its channel, which must not be
        the shared one. The hub re-declares on its own terms, so aio-pika is not asked to
        (its restore of a queue changed on the broker would fail the whole reconnection).
        """
        channel = await self.channel(url, connect_timeout=connect_timeout)
        if (url, name) not in self._known_queues:
            # A plain channel: a robust one would reopen itself after the broker closed it.
            probe = aio_pika.Channel(self._brokers[url].connection, publisher_confirms=False)
            await probe.initialize()
            try:
                await probe.get_queue(name, ensure=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                await channel.declare_queue(name, durable=True, robust=False)
            finally:
                if not probe.is_closed:
                    await probe.close()
            self._known_queues.add((url, name))
        queue = await channel.get_queue(name, ensure=False)
        if bind is not None and (url, name, *bind) not in self._known_bindings:
            await queue.bind(bind[0], routing_key=bind[1])
            self._known_bindings.add((url, name, *bind))
        return queue

    async def close(self) -> None:
        for broker in self._brokers.values():
            await broker.connection.close()
        self._brokers.clear()


class AmqpTransport:
    """Publishes persistent JSON messages through the worker's pool and waits for confirms."""

    def __init__(self, pool: AmqpPool) -> None:
        self._pool = pool

    def method(self, delivery: Delivery) -> str:
        return "PUBLISH"

    def prepare(
        self, delivery: Delivery, service: Service, credentials: Credentials, attempt: int
    ) -> "AmqpCall":
        target = AmqpTarget.from_url(credentials.url)
        routing_key = target.routing_key_for(delivery.endpoint)
        where = target.describe(routing_key)
        if delivery.payload is None:
            raise Unsendable("no payload", where)
        if not routing_key:
            reason = "no routing key: set the rule's endpoint or the URL's routing_key"
            raise Unsendable(reason, where)
        body, now = delivery.payload.encode(), datetime.now(UTC)
        message = aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=delivery.id,
            correlation_id=delivery.id,
            reply_to=service.response_queue,
            timestamp=now,
            headers={
                "x-hub-event": delivery.event_name,
                "x-hub-event-id": delivery.event_id,
                "x-hub-attempt": attempt,
                # Standard Webhooks' webhook-id, -timestamp and -signature, for signing services.
                **signature_headers(credentials.signers, delivery.id, body, int(now.timestamp())),
            },
        )
        return AmqpCall(self._pool, target, routing_key, message, service, credentials.url)


@dataclass(frozen=True)
class AmqpCall:
    """One message, ready to publish (mandatory: an unroutable message is a failure)."""

    pool: AmqpPool
    broker: AmqpTarget
    routing_key: str
    message: aio_pika.Message
    service: Service
    url: str
    """The broker URL with its password, only to scrub it from error messages."""

    @property
    def target(self) -> str:
        return self.broker.describe(self.routing_key)

    async def send(self) -> Sent:
        """Publish, in a PRODUCER span (while tracing is on) whose context goes with the
        message as its ``traceparent``/``tracestate`` headers."""
        if active_tracer() is None:
            return await self._send()
        exchange = self.broker.exchange or "amq.default"
        attributes = amqp_attributes(
            self.message, self.broker.exchange, self.routing_key, self.broker.connection_url
        )
        with span(f"publish {exchange}", kind=SpanKind.PRODUCER, attributes=attributes) as current:
            carrier: dict[str, str] = {}
            inject(carrier)
            self.message.headers.update(carrier)
            sent = await self._send()
            record(current, sent)
            return sent

    async def _send(self) -> Sent:
        timeout = self.service.timeout
        try:
            async with asyncio.timeout(timeout):
                await self._publish()
        except EgressRefused as err:
            return Sent(retryable=False, error=str(err))
        except aiormq.exceptions.PublishError as err:
            # The broker is fine; nothing is bound to take the message.
            returned = err.message.delivery if err.message else None
            reason = getattr(returned, "reply_text", "returned")
            exchange = self.broker.exchange or "(default)"
            error = f"unroutable: {reason} (exchange {exchange!r}, key {self.routing_key!r})"
            if self.broker.queue_declare:
                error += f", also after declaring queue {self.broker.queue_declare!r} again"
            return Sent(error=error)
        except BROKER_ERRORS as err:
            text = scrub(f"{type(err).__name__}: {err}".rstrip(": "), self.url)
            if isinstance(err, TimeoutError | asyncio.TimeoutError):
                text = f"timed out after {timeout:g}s"
            return Sent(healthy=False, error=text)
        return Sent()

    @property
    def _bind(self) -> tuple[str, str] | None:
        """The binding of the URL's queue: to a named exchange, by the routing key."""
        return (self.broker.exchange, self.routing_key) if self.broker.exchange else None

    async def _declare(self) -> None:
        """Make sure the URL's queue exists (durable if new), bound to a named exchange."""
        url, timeout = self.broker.connection_url, self.service.timeout
        await self.pool.queue(
            url, self.broker.queue_declare, connect_timeout=timeout, bind=self._bind
        )

    async def _publish(self) -> None:
        target, url, timeout = self.broker, self.broker.connection_url, self.service.timeout
        if target.queue_declare:
            await self._declare()
        if self.service.response_queue:
            # Replies to a queue that does not exist yet would be dropped.
            await self.pool.queue(url, self.service.response_queue, connect_timeout=timeout)
        try:
            await self._publish_once()
        except aiormq.exceptions.PublishError:
            if not target.queue_declare:
                raise  # nothing the hub declared: nothing it could put back
            # The queue or its binding may have gone since the pool checked them (deleted,
            # unbound, a broker that lost its definitions): check, declare, bind, send again.
            self.pool.forget(url, target.queue_declare, bind=self._bind)
            await self._declare()
            await self._publish_once()

    async def _publish_once(self) -> None:
        """Publish (mandatory) and wait for the broker's confirm; a returned message raises
        PublishError."""
        timeout = self.service.timeout
        channel = await self.pool.channel(self.broker.connection_url, connect_timeout=timeout)
        exchange = (
            await channel.get_exchange(self.broker.exchange, ensure=False)
            if self.broker.exchange
            else channel.default_exchange
        )
        await exchange.publish(self.message, routing_key=self.routing_key, mandatory=True)
