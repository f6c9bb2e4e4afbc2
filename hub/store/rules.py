"""The rules table, and the versioned snapshot of enabled rules that rule indexes cache."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from hub.core.models import Rule, RuleIn, RulePatch, Service
from hub.store.errors import NotFoundError
from hub.store.signing_keys import active_keys

_RULE_SELECT = """
    SELECT r.id, r.event, s.name AS service, r.method, r.endpoint, r.template, r.enabled,
           r.priority, r.order_key, r.created_at, r.updated_at
    FROM rules r JOIN services s ON s.id = r.service_id
"""


@dataclass(frozen=True)
class RuleTarget:
    """An enabled rule with its enabled service, as the rule index holds them."""

    rule: Rule
    service: Service


@dataclass(frozen=True)
class IndexSnapshot:
    """All enabled rules and services at one configuration version (each service with its
    active signing keys, still sealed)."""

    version: int
    targets: list[RuleTarget]
    services: dict[int, Service]


class RuleStore:
    """Rules by id, shown with their service's name."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(self, rule: RuleIn) -> Rule:
        row = await self._pool.fetchrow(
            _returning_rule(
                """INSERT INTO rules (event, service_id, method, endpoint, template, enabled,
                       priority, order_key)
                   SELECT $1, s.id, $3, $4, $5, $6, $7, $8 FROM services s WHERE s.name = $2
                   RETURNING *""",
                service="$2",
            ),
            *_values(rule),
        )
        return _rule_of(row, rule.service)

    async def all(self, *, service: str | None = None) -> list[Rule]:
        rows = await self._pool.fetch(
            _RULE_SELECT + " WHERE ($1::text IS NULL OR s.name = $1) ORDER BY r.id", service
        )
        return [Rule.model_validate(dict(r)) for r in rows]

    async def get(self, rule_id: int) -> Rule:
        row = await self._pool.fetchrow(_RULE_SELECT + " WHERE r.id = $1", rule_id)
        if row is None:
            raise NotFoundError(f"no rule with id {rule_id}")
        return Rule.model_validate(dict(row))

    async def update(self, rule_id: int, patch: RulePatch) -> Rule:
        """Change the given fields, after checking the rule they make is valid."""
        current = await self.get(rule_id)
        merged = RuleIn.model_validate(
            current.model_dump(include=set(RuleIn.model_fields))
            | patch.model_dump(exclude_unset=True)
        )
        row = await self._pool.fetchrow(
            _returning_rule(
                """UPDATE rules r SET event = $2, service_id = s.id, method = $4, endpoint = $5,
                       template = $6, enabled = $7, priority = $8, order_key = $9,
                       updated_at = now()
                   FROM services s WHERE r.id = $1 AND s.name = $3
                   RETURNING r.*""",
                service="$3",
            ),
            rule_id,
            *_values(merged),
        )
        return _rule_of(row, merged.service)

    async def delete(self, rule_id: int) -> None:
        status = await self._pool.execute("DELETE FROM rules WHERE id = $1", rule_id)
        if status == "DELETE 0":
            raise NotFoundError(f"no rule with id {rule_id}")

    async def config_version(self) -> int:
        """The version that the last committed change of services or rules produced."""
        version: int = await self._pool.fetchval("SELECT version FROM config_version")
        return version

    async def snapshot(self) -> IndexSnapshot:
        """Enabled rules and services, read in one snapshot together with its version."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            version = await conn.fetchval("SELECT version FROM config_version")
            service_rows = await conn.fetch("SELECT * FROM services WHERE enabled")
            rule_rows = await conn.fetch(
                _RULE_SELECT + " WHERE r.enabled AND s.enabled ORDER BY r.id"
            )
            keys = await active_keys(conn)
        services = {
            r["id"]: Service.model_validate(dict(r) | {"signing_keys": keys.get(r["id"], [])})
            for r in service_rows
        }
        by_name = {s.name: s for s in services.values()}
        targets = []
        for row in rule_rows:
            rule = Rule.model_validate(dict(row))
            targets.append(RuleTarget(rule=rule, service=by_name[rule.service]))
        return IndexSnapshot(version=version, targets=targets, services=services)


def _returning_rule(change: str, *, service: str) -> str:
    """A statement that changes one rule and returns it with its service's name (a param)."""
    return f"""WITH changed AS ({change})
               SELECT c.id, c.event, {service}::text AS service, c.method, c.endpoint,
                      c.template, c.enabled, c.priority, c.order_key, c.created_at,
                      c.updated_at
               FROM changed c"""


def _values(rule: RuleIn) -> tuple[str, str, str, str, str, bool, int, str | None]:
    """The rule's columns as parameters: event, service name, method, endpoint, template,
    enabled, priority, order key."""
    return (
        rule.event,
        rule.service,
        rule.method.value,
        rule.endpoint,
        rule.template,
        rule.enabled,
        rule.priority,
        rule.order_key,
    )


def _rule_of(row: asyncpg.Record | None, service: str) -> Rule:
    """No row means the named service does not exist (the rule joins to it)."""
    if row is None:
        raise NotFoundError(f"no service named {service!r}")
    return Rule.model_validate(dict(row))
