"""The store: one asyncpg pool, one object per area of the schema."""

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.core.egress import EgressPolicy
from hub.secrets import SecretBox
from hub.store.activity import ActivityStore
from hub.store.circuits import CircuitStore
from hub.store.claims import ClaimStore
from hub.store.dead_letters import DeadLetterStore
from hub.store.delivery_log import LogStore
from hub.store.errors import UNAVAILABLE_ERRORS, StoreError
from hub.store.metrics import MetricsStore
from hub.store.rules import RuleStore
from hub.store.sealed import SealedStore
from hub.store.services import ServiceStore

Connection = asyncpg.Connection | PoolConnectionProxy
Notify = Callable[[str], None]
"""Called with a NOTIFY's payload."""


CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection: a database that is down must fail fast, not hang."""


class Store:
    """Typed queries over one pool: ``store.services``, ``.rules``, ``.log``, ``.dlq``,
    ``.circuits``, ``.metrics``, ``.sealed``, ``.claims``, ``.activity`` (the console's overview).

    With an ``egress`` policy, a service URL whose host is a literal address the egress guard
    refuses is refused on create and update (without one, only delivery checks it).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        box: SecretBox | None = None,
        egress: EgressPolicy | None = None,
        *,
        dsn: str | None = None,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.box = box or SecretBox(None)
        self.services = ServiceStore(pool, self.box, egress)
        self.rules = RuleStore(pool)
        self.log = LogStore(pool)
        self.dlq = DeadLetterStore(pool, self.log)
        self.circuits = CircuitStore(pool)
        self.metrics = MetricsStore(pool)
        self.sealed = SealedStore(pool, self.box)
        self.claims = ClaimStore(pool)
        self.activity = ActivityStore(pool)

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
        """A store with its own pool, closed on exit; with ``min_size=0`` it opens even while
        the database is down (every query then fails until it is back)."""
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT
        )
        try:
            yield cls(pool, box, egress, dsn=dsn)
        finally:
            await pool.close()

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.pool.fetchval("SELECT 1")

    async def listen(self, channel: str, on_notify: Notify) -> "Listener":
        """Open a connection of its own (outside the pool, whose connections come and go)
        that calls ``on_notify`` for each NOTIFY on channel."""
        if self.dsn is None:
            raise StoreError("this store was made without a DSN, so it cannot LISTEN")
        conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)

        def callback(_conn: Connection, _pid: int, _channel: str, payload: object) -> None:
            on_notify(str(payload))

        try:
            await conn.add_listener(channel, callback)
        except BaseException:
            conn.terminate()
            raise
        return Listener(conn)


@dataclass(frozen=True)
class Listener:
    """A LISTEN on a connection of its own; ``closed`` once the database is lost."""

    conn: asyncpg.Connection

    @property
    def closed(self) -> bool:
        return bool(self.conn.is_closed())

    async def close(self) -> None:
        """Close the connection (a lost one needs no goodbye)."""
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self.conn.close(timeout=CONNECT_TIMEOUT)
        self.conn.terminate()
