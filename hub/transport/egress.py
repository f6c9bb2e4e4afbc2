"""The egress guard at connection time: resolve the host, check every address, connect to
an address it checked (pinning), so an answer that changes between the check and the
connection (DNS rebinding) cannot reach anything the check refused.

Both transports connect through here, once per new connection (a pooled HTTP connection or
a broker connection is checked when it is opened, reconnects included):

* HTTP: ``GuardedTransport`` is httpx's transport over an httpcore pool whose network
  backend is ``GuardedNetwork``. httpcore asks the backend for a TCP stream to the URL's
  host name; the backend resolves and checks it and opens the stream to a checked address.
  Everything above the socket still works with the name: the pool keys connections by it
  (so two names never share a connection), the Host header carries it, and TLS sends it as
  SNI and verifies the certificate against it. Proxy variables (HTTP_PROXY…) are not used:
  deliveries connect directly, and only through the guard.
* AMQP: ``GuardedTcp`` is an aiormq transport factory doing the same for a broker
  connection; for ``amqps`` the TLS handshake names the URL's host (SNI and certificate
  verification), while the socket goes to the checked address.

A host name whose answers include one refused address is refused as a whole; its other
answers are not tried.
"""

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aio_pika
import aiormq
import httpcore
import httpx
from yarl import URL

from hub.core.egress import EgressPolicy, EgressRefused, parse_address

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host name, port) -> the addresses it resolves to, as text; raises OSError if none."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer (getaddrinfo in a thread), in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressGuard:
    """The policy plus a resolver: what a host may be connected to, checked."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver or system_resolver

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to, in the resolver's order.

        Raises EgressRefused if any of them is refused, OSError if the name does not resolve.
        """
        literal = parse_address(host)
        if literal is not None:
            self.policy.check(literal, host)
            return [str(literal)]
        answers = [parse_address(answer) for answer in await self._resolver(host, port)]
        checked = [address for address in answers if address is not None]
        if not checked:
            raise OSError(f"{host} resolves to no address")
        if not self.policy.allows_host(host):
            for address in checked:
                self.policy.check(address, host)
        return [str(address) for address in checked]


class GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard checked."""

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._guard.addresses(host, port)  # EgressRefused goes up as is
        except OSError as err:
            raise httpcore.ConnectError(str(err)) from err
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (request and error mapping), over a pool that connects
    through ``GuardedNetwork``. httpx 0.28 takes no network backend, hence the swap."""

    def __init__(self, guard: EgressGuard, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetwork(guard),
        )


class GuardedTcp(aiormq.TransportFactory):
    """aiormq's socket factory through the guard: the broker connection (and each
    reconnection) goes to a checked address; TLS names the URL's host."""

    def __init__(self, guard: EgressGuard, checked: list[str] | None = None) -> None:
        self._guard = guard
        self._checked = checked
        """Addresses the pool checked just before connecting: the first connect uses them."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = url.host or "", url.port or 5672
        provider: aiormq.SSLContextProvider = kwargs.pop("ssl_context_provider")
        if url.scheme == "amqps":
            kwargs.update(ssl=await provider.get_context(), server_hostname=host)
        try:
            addresses = self._checked or await self._guard.addresses(host, port)
        except (EgressRefused, OSError) as err:
            raise aiormq.exceptions.AMQPConnectionError(str(err)) from err
        self._checked = None
        failure = OSError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await asyncio.open_connection(host=address, port=port, **kwargs)
            except OSError as err:
                failure = err
        raise aiormq.exceptions.AMQPConnectionError(*failure.args) from failure


class GuardedRobustConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection, whose every (re)connect opens its socket with
    ``GuardedTcp`` (aiormq takes a transport factory; aio-pika passes its kwargs on)."""

    def __init__(self, url: URL, factory: GuardedTcp, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.kwargs["transport_factory"] = factory
