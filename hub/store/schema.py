"""The schema: numbered SQL files under ``migrations/``, applied once each, in order."""

from importlib import resources

import asyncpg

from hub.store.delivery_log import ensure_partitions

# Any fixed number works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x4855_4201


def migration_files() -> list[tuple[int, str, str]]:
    """The packaged migrations as (version, name, sql), in order."""
    files = resources.files("hub.store") / "migrations"
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(dsn: str, *, until: int | None = None) -> list[str]:
    """Apply pending migrations (up to version ``until``, for tests of a migration); safe
    when several processes start at once. Then make the delivery log's partitions for the
    days ahead, so every start-up (worker, ``hub migrate``, ``hub dev``) leaves a week
    of them."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            done = await _apply_pending(conn, until)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        if until is None:
            await ensure_partitions(conn)
        return done
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, until: int | None = None) -> list[str]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    done = []
    for version, name, sql in migration_files():
        if version in applied or (until is not None and version > until):
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
        done.append(name)
    return done
