"""AMQP plumbing: broker URLs of services, and one robust connection per broker per worker.

A service's ``base_url`` is an ``amqp://`` or ``amqps://`` URL whose query may carry
``exchange``, ``routing_key`` and ``queue_declare``; every other query parameter (heartbeat,
connection_timeout…) is passed to aio-pika. Credentials stay in the URL and are masked
wherever the URL or an error that may quote it is shown.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from hub.models import mask_url

HUB_PARAMS = ("exchange", "routing_key", "queue_declare")


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
    keeps it (aio-pika reconnects it). ``connections_opened`` counts real connects.
    """

    def __init__(self, *, name: str = "temporal-hub") -> None:
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
                connection = await aio_pika.connect_robust(
                    url,
                    timeout=connect_timeout,
                    client_properties={"connection_name": self._name},
                )
                self.connections_opened += 1
                broker = self._brokers[url] = _Broker(connection)
            broker.channel = await broker.connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            return broker.channel

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
