"""A cached, versioned view of the enabled rules, shared by emitters and workers.

Most events on a busy site match no rule, so the emitter checks this index before it asks
Temporal for anything. PostgreSQL bumps a version and sends a NOTIFY on every change of
services or rules; the index reloads when it hears one, when a caller needs a newer version
than it holds (the worker, for an event an emitter matched with a newer index), or when its
time-to-live has passed (in case a notification was missed).
"""

import asyncio
import contextlib
import time

import asyncpg

from hub.core.matching import matches
from hub.core.models import Service
from hub.store import Listener, Store
from hub.store.rules import IndexSnapshot, RuleTarget

NOTIFY_CHANNEL = "hub_config"


class RuleIndex:
    """Enabled rules and services, reloaded when the configuration changes."""

    def __init__(self, store: Store, *, ttl: float = 30.0) -> None:
        self._store = store
        self._ttl = ttl
        self._snapshot: IndexSnapshot | None = None
        self._loaded_at = 0.0
        self._announced = 0
        self._lock = asyncio.Lock()
        self._listener: Listener | None = None

    @property
    def version(self) -> int:
        return self._snapshot.version if self._snapshot else 0

    async def start(self) -> None:
        """Listen for configuration changes and load the first snapshot."""
        await self._listen()
        await self.refresh()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def refresh(self, min_version: int = 0) -> IndexSnapshot:
        """The current snapshot, reloaded first if it is stale or older than min_version."""
        snapshot = self._snapshot
        if snapshot is not None and not self._stale(snapshot, min_version):
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is None or self._stale(snapshot, min_version):
                if self._listener is None or self._listener.closed:
                    await self._listen()
                snapshot = self._snapshot = await self._store.rules.snapshot()
                self._loaded_at = time.monotonic()
            return snapshot

    async def match(self, event_name: str, min_version: int = 0) -> list[RuleTarget]:
        """The enabled rules (with their services) that an event name matches, by rule id."""
        snapshot = await self.refresh(min_version)
        return [t for t in snapshot.targets if matches(t.rule.event, event_name)]

    async def service(self, service_id: int, min_version: int = 0) -> Service | None:
        """An enabled service by id, or None if it is disabled or gone."""
        snapshot = await self.refresh(min_version)
        return snapshot.services.get(service_id)

    def _stale(self, snapshot: IndexSnapshot, min_version: int) -> bool:
        version = snapshot.version
        if min_version > version or self._announced > version:
            return True
        return time.monotonic() - self._loaded_at > self._ttl

    async def _listen(self) -> None:
        try:
            self._listener = await self._store.listen(NOTIFY_CHANNEL, self._on_notify)
        except (OSError, asyncpg.PostgresError):
            self._listener = None

    def _on_notify(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._announced = max(self._announced, int(payload))
