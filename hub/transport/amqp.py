"""AMQP delivery: broker URLs of services, one robust connection per broker per worker, and
publishing with confirms.

A service's ``base_url`` is an ``amqp://`` or ``amqps://`` URL whose query may carry
``exchange``, ``routing_key`` and ``queue_declare``; every other query parameter (heartbeat,
connection_timeout…) is passed to aio-pika. Credentials stay in the URL and are masked
wherever the URL or an error that may quote it is shown.
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from yarl import URL

from hub.core.egress import EgressRefused
from hub.core.models import Delivery, Service, mask_url
from hub.core.signing import signature_headers
from hub.secrets import Credentials
from hub.transport.base import Sent, Unsendable
from hub.transport.egress import EgressGuard, GuardedRobustConnection, GuardedTcp

HUB_PARAMS = ("exchange", "routing_key", "queue_declare")
# Failures of the broker or the link to it: the breaker counts them.
BROKER_ERRORS = (OSError, asyncio.TimeoutError, aiormq.exceptions.AMQPError)
DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


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
    channel: AbstractChannel | None = None


class AmqpPool:
    """One robust connection per broker URL, each with one confirming channel, reused.

    The old plugin opened a connection per message; here a worker opens one per broker and
    keeps it (aio-pika reconnects it). ``connections_opened`` counts real connects. Every
    connect, and every reconnect, goes through the egress guard.
    """

    def __init__(self, guard: EgressGuard, *, name: str = "temporal-hub") -> None:
        self._guard = guard
        self._name = name
        self._brokers: dict[str, _Broker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._known_queues: set[tuple[str, str]] = set()  # (broker URL, queue name)
        self._known_bindings: set[tuple[str, str, str, str]] = set()  # (+ exchange, key)
        self.connections_opened = 0

    async def channel(self, url: str, *, connect_timeout: float) -> AbstractChannel:
        """An open channel with publisher confirms (unroutable messages raise)."""
        if channel := self._open_channel(url):
            return channel
        async with self._locks.setdefault(url, asyncio.Lock()):
            if channel := self._open_channel(url):
                return channel
            broker = self._brokers.get(url)
            if broker is None or broker.connection.is_closed:
                connection = await self._connect(url, connect_timeout)
                self.connections_opened += 1
                broker = self._brokers[url] = _Broker(connection)
            broker.channel = await broker.connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            return broker.channel

    async def _connect(self, url: str, connect_timeout: float) -> AbstractRobustConnection:
        """A robust connection to a checked address of the broker (EgressRefused before any
        socket is opened); its reconnections are checked again."""
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 5672)
        checked = await self._guard.addresses(parts.hostname or "", port)
        connection = GuardedRobustConnection(
            URL(url),
            GuardedTcp(self._guard, checked),
            client_properties={"connection_name": self._name},
        )
        await connection.connect(timeout=connect_timeout)
        return connection

    def _open_channel(self, url: str) -> AbstractChannel | None:
        broker = self._brokers.get(url)
        if broker is None or broker.connection.is_closed:
            return None
        if broker.channel is None or broker.channel.is_closed:
            return None
        return broker.channel

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

        Checked with the broker once per worker, on a throwaway channel: a passive declare of
        a missing queue closes its channel, which must not be the shared one.
        """
        channel = await self.channel(url, connect_timeout=connect_timeout)
        if (url, name) not in self._known_queues:
            connection = self._brokers[url].connection
            probe = await connection.channel(publisher_confirms=False)
            try:
                await probe.get_queue(name, ensure=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                await channel.declare_queue(name, durable=True)
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
            return Sent(
                error=f"unroutable: {reason} (exchange {exchange!r}, key {self.routing_key!r})"
            )
        except BROKER_ERRORS as err:
            text = scrub(f"{type(err).__name__}: {err}".rstrip(": "), self.url)
            if isinstance(err, TimeoutError | asyncio.TimeoutError):
                text = f"timed out after {timeout:g}s"
            return Sent(healthy=False, error=text)
        return Sent()

    async def _publish(self) -> None:
        target, url, timeout = self.broker, self.broker.connection_url, self.service.timeout
        if target.queue_declare:
            # Make sure the URL's queue exists (durable if new), bound to a named exchange.
            bind = (target.exchange, self.routing_key) if target.exchange else None
            await self.pool.queue(url, target.queue_declare, connect_timeout=timeout, bind=bind)
        if self.service.response_queue:
            # Replies to a queue that does not exist yet would be dropped.
            await self.pool.queue(url, self.service.response_queue, connect_timeout=timeout)
        channel = await self.pool.channel(url, connect_timeout=timeout)
        exchange = (
            await channel.get_exchange(target.exchange, ensure=False)
            if target.exchange
            else channel.default_exchange
        )
        await exchange.publish(self.message, routing_key=self.routing_key, mandatory=True)
