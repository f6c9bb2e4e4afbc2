"""The store: one asyncpg pool, one object per area of the schema."""

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.core.egress import EgressPolicy
from hub.secrets import SecretBox
from hub.store.circuits import CircuitStore
from hub.store.dead_letters import DeadLetterStore
from hub.store.delivery_log import LogStore
from hub.store.metrics import MetricsStore
from hub.store.rules import RuleStore
from hub.store.sealed import SealedStore
from hub.store.services import ServiceStore

Connection = asyncpg.Connection | PoolConnectionProxy
Notify = Callable[[str], None]
"""Called with a NOTIFY's payload."""


class Store:
    """Typed queries over one pool: ``store.services``, ``.rules``, ``.log``, ``.dlq``,
    ``.circuits``, ``.metrics``, ``.sealed``.

    With an ``egress`` policy, a service URL whose host is a literal address the egress guard
    refuses is refused on create and update (without one, only delivery checks it).
    """

    def __init__(
        self, pool: asyncpg.Pool, box: SecretBox | None = None, egress: EgressPolicy | None = None
    ) -> None:
        self.pool = pool
        self.box = box or SecretBox(None)
        self.services = ServiceStore(pool, self.box, egress)
        self.rules = RuleStore(pool)
        self.log = LogStore(pool)
        self.dlq = DeadLetterStore(pool, self.log)
        self.circuits = CircuitStore(pool)
        self.metrics = MetricsStore(pool, self.circuits)
        self.sealed = SealedStore(pool, self.box)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        box: SecretBox | None = None,
        egress: EgressPolicy | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> AsyncIterator["Store"]:
        """A store with its own pool, closed on exit."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            yield cls(pool, box, egress)
        finally:
            await pool.close()

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.pool.fetchval("SELECT 1")

    async def listen(self, channel: str, on_notify: Notify) -> "Listener":
        """Hold a pooled connection that calls ``on_notify`` for each NOTIFY on channel."""
        conn = await self.pool.acquire()

        def callback(_conn: Connection, _pid: int, _channel: str, payload: object) -> None:
            on_notify(str(payload))

        await conn.add_listener(channel, callback)
        return Listener(self.pool, conn, channel, callback)


@dataclass(frozen=True)
class Listener:
    """A LISTEN on a pooled connection; ``close`` gives the connection back."""

    pool: asyncpg.Pool
    conn: PoolConnectionProxy
    channel: str
    callback: Callable[[Connection, int, str, object], None]

    @property
    def closed(self) -> bool:
        return bool(self.conn.is_closed())

    async def close(self) -> None:
        # A connection that is gone already needs no unlisten, only to be given back.
        with contextlib.suppress(asyncpg.InterfaceError, OSError):
            await self.conn.remove_listener(self.channel, self.callback)
        await self.pool.release(self.conn)
