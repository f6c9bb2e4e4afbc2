"""Claim-checks: large event data and rendered payloads, stored once and named by a key that
workflow histories carry instead of the value (see hub.core.claims)."""

import asyncpg

from hub.store.errors import StoreError


class ClaimStore:
    """put once, get by key; retention removes what no workflow can still need."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def put(self, key: str, body: str) -> None:
        """Store a value under its content-derived key; a second put only renews its age, so
        retention never removes a value a new workflow (a replay) has just claimed."""
        await self._pool.execute(
            """INSERT INTO claims (key, body) VALUES ($1, $2)
               ON CONFLICT (key) DO UPDATE SET created_at = now()""",
            key,
            body,
        )

    async def get(self, key: str) -> str:
        """The value of a key; StoreError if it is gone (pruned past the retention)."""
        body: str | None = await self._pool.fetchval("SELECT body FROM claims WHERE key = $1", key)
        if body is None:
            raise StoreError(f"claim-check {key!r} is gone (pruned after the log retention?)")
        return body

    async def prune(self, older_than_days: int) -> int:
        """Delete claims past the retention period (the DLQ keeps its own copies)."""
        status = await self._pool.execute(
            "DELETE FROM claims WHERE created_at < now() - make_interval(days => $1)",
            older_than_days,
        )
        return int(status.split()[-1])
