"""Migrations and store constraints against a real PostgreSQL."""

import asyncio

import asyncpg
import pytest

from hub.core.models import RuleIn, ServiceIn
from hub.runtime.rule_index import RuleIndex
from hub.store import Store, migrate, migration_files


async def test_concurrent_migrations_apply_each_file_once(fresh_database):
    dsn = await fresh_database("migrate")
    results = await asyncio.gather(*(migrate(dsn) for _ in range(4)))

    expected = [name for _, name, _ in migration_files()]
    assert sorted(results, key=len)[-1] == expected
    assert sum(len(r) for r in results) == len(expected)
    assert await migrate(dsn) == []
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert [r["name"] for r in rows] == expected
    assert {"services", "rules", "delivery_log", "dlq", "circuit_state"} <= tables


async def test_database_enforces_the_limits_the_models_enforce(store: Store, unique):
    # A writer that bypasses the models still cannot store an out-of-range service.
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO services (name, type, base_url, max_attempts) VALUES ($1, 'http', 'x', 6)",
            f"{unique}-six",
        )
    service = await store.services.create(ServiceIn(name=f"{unique}-s", base_url="http://h"))
    assert (service.timeout, service.max_attempts, service.backoff) == (5.0, 5, 1.0)
    assert (service.cb_threshold, service.cb_cooldown) == (5, 30.0)


async def test_every_configuration_change_bumps_the_version(store: Store, unique):
    before = await store.rules.config_version()
    await store.services.create(ServiceIn(name=f"{unique}-v", base_url="http://h"))
    after_create = await store.rules.config_version()
    await store.services.delete(f"{unique}-v")
    assert before < after_create < await store.rules.config_version()


async def test_rule_index_keeps_its_snapshot_while_the_version_stands(store: Store, unique):
    """Past its TTL the index asks only for the version: the same snapshot (and its pattern
    index) serves until a change, which a reload then brings in."""
    index = RuleIndex(store, ttl=0.0)  # every call is past the TTL
    await index.start()
    try:
        first = await index.refresh()
        assert await index.refresh() is first
        service = await store.services.create(ServiceIn(name=f"{unique}-idx", base_url="http://h"))
        await store.rules.create(RuleIn(event=f"{unique}.idx", service=service.name))
        changed = await index.refresh()
        assert changed is not first
        assert changed.version == await store.rules.config_version()
        assert [t.rule.event for t in await index.match(f"{unique}.idx")] == [f"{unique}.idx"]
    finally:
        await index.close()
