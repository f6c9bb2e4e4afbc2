"""Every sealed column in one list, so re-sealing them under a new key misses none."""

import asyncpg

from hub.secrets import SecretBox

SEALED_COLUMNS: dict[str, tuple[str, ...]] = {
    "services": ("secret_url", "token", "inbound_token", "inbound_secret"),
    "signing_keys": ("secret",),
}
"""table -> columns holding SecretBox ciphertext (every table has an ``id`` key)."""


class SealedStore:
    """Re-seals stored credentials when the secret key changes."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    async def reseal(self) -> int:
        """Seal every stored credential with the newest key, in one transaction.

        Returns how many rows changed; a row already sealed with the newest key is left as it
        is, so a second run reports 0. Any value that no listed key opens aborts the whole
        run (SecretKeyError), leaving every row as it was.
        """
        changed = 0
        async with self._pool.acquire() as conn, conn.transaction():
            for table, columns in SEALED_COLUMNS.items():
                rows = await conn.fetch(f"SELECT id, {', '.join(columns)} FROM {table} FOR UPDATE")
                for row in rows:
                    updates = {
                        column: resealed
                        for column in columns
                        if row[column] is not None
                        and (resealed := self._box.reseal(row[column])) is not None
                    }
                    if updates:
                        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(updates, 2))
                        await conn.execute(
                            f"UPDATE {table} SET {assignments} WHERE id = $1",
                            row["id"],
                            *updates.values(),
                        )
                        changed += 1
        return changed
