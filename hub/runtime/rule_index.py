"""A cached, versioned view of the enabled rules, shared by emitters and workers.

Most events on a busy site match no rule, so the emitter checks this index before it asks
Temporal for anything. PostgreSQL bumps a version and sends a NOTIFY on every change of
services or rules; the index reloads when it hears one, when a caller needs a newer version
than it holds (the worker, for an event an emitter matched with a newer index), or when its
time-to-live has passed (in case a notification was missed).

The database may go away. A watcher re-opens the LISTEN connection every second until it is
back, then reloads; meanwhile the index serves the snapshot it has (rules cannot change while
the database is down) and says it is not ``available``, so emitters can refuse new events.
"""

import asyncio
import contextlib
import logging
import time

from hub.core.matching import PatternIndex
from hub.core.models import Service
from hub.store import UNAVAILABLE_ERRORS, Listener, Store, StoreUnavailable
from hub.store.rules import IndexSnapshot, RuleTarget

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "hub_config"


class RuleIndex:
    """Enabled rules and services, reloaded when the configuration changes."""

    def __init__(self, store: Store, *, ttl: float = 30.0, retry_every: float = 1.0) -> None:
        self._store = store
        self._ttl = ttl
        self._retry_every = retry_every
        self._snapshot: IndexSnapshot | None = None
        self._loaded_at = 0.0
        self._announced = 0
        self._lock = asyncio.Lock()
        self._listener: Listener | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._patterns: tuple[IndexSnapshot, PatternIndex] | None = None

    @property
    def version(self) -> int:
        return self._snapshot.version if self._snapshot else 0

    @property
    def available(self) -> bool:
        """Whether the index hears the database now (its LISTEN connection is open)."""
        return self._listener is not None and not self._listener.closed

    async def start(self) -> None:
        """Listen and load the first snapshot; if the database is down, start anyway and
        keep trying in the background."""
        await self._reconnect()
        self._watcher = asyncio.create_task(self._watch(), name="rule-index-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._drop_listener()

    async def refresh(self, min_version: int = 0) -> IndexSnapshot:
        """The current snapshot, reloaded first if it is stale or older than min_version.

        While the database is down, a stale snapshot is served if it is at least
        min_version; otherwise StoreUnavailable.
        """
        snapshot = self._snapshot
        if snapshot is not None and not self._stale(snapshot, min_version):
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and not self._stale(snapshot, min_version):
                return snapshot
            try:
                return await self._reload()
            except UNAVAILABLE_ERRORS as err:
                if snapshot is None or min_version > snapshot.version:
                    raise StoreUnavailable(
                        f"the database is unreachable ({_describe(err)})"
                    ) from err
                # Try again in a second, not on every call.
                self._loaded_at = time.monotonic() - self._ttl + self._retry_every
                return snapshot

    async def match(self, event_name: str, min_version: int = 0) -> list[RuleTarget]:
        """The enabled rules (with their services) that an event name matches, by rule id."""
        snapshot = await self.refresh(min_version)
        if self._patterns is None or self._patterns[0] is not snapshot:
            self._patterns = (snapshot, PatternIndex([t.rule.event for t in snapshot.targets]))
        return [snapshot.targets[i] for i in self._patterns[1].positions(event_name)]

    async def service(self, service_id: int, min_version: int = 0) -> Service | None:
        """An enabled service by id, or None if it is disabled or gone."""
        snapshot = await self.refresh(min_version)
        return snapshot.services.get(service_id)

    def _stale(self, snapshot: IndexSnapshot, min_version: int) -> bool:
        version = snapshot.version
        if min_version > version or self._announced > version:
            return True
        return time.monotonic() - self._loaded_at > self._ttl

    async def _reload(self) -> IndexSnapshot:
        """Load a new snapshot; when only the TTL ran out and the version has not moved, keep
        the one in hand (one small query instead of every rule, and no new pattern index:
        178 ms at 10,000 rules, bench/results.md)."""
        current = self._snapshot
        if (
            current is not None
            and self._announced <= current.version
            and await self._store.rules.config_version() == current.version
        ):
            self._loaded_at = time.monotonic()
            return current
        snapshot = self._snapshot = await self._store.rules.snapshot()
        self._loaded_at = time.monotonic()
        return snapshot

    async def _watch(self) -> None:
        """Every ``retry_every`` seconds: if the LISTEN connection is gone, re-open it."""
        while True:
            await asyncio.sleep(self._retry_every)
            if not self.available:
                await self._reconnect()

    async def _reconnect(self) -> None:
        """(Re-)open the LISTEN connection, then reload: NOTIFYs sent meanwhile were lost."""
        await self._drop_listener()
        try:
            self._listener = await self._store.listen(NOTIFY_CHANNEL, self._on_notify)
            async with self._lock:
                await self._reload()
        except UNAVAILABLE_ERRORS as err:
            await self._drop_listener()
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "rule index: the database is unreachable (%s); retrying", _describe(err)
                )
            return
        if self._down_since is not None:
            log.info(
                "rule index: the database is back after %.1fs (version %d)",
                time.monotonic() - self._down_since,
                self.version,
            )
            self._down_since = None

    async def _drop_listener(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()

    def _on_notify(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._announced = max(self._announced, int(payload))


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
