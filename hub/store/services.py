"""The services table: external APIs and brokers, their credentials sealed on write."""

from __future__ import annotations

from typing import Any

import asyncpg

from hub.core.models import Service, ServiceIn, ServicePatch
from hub.secrets import SecretBox
from hub.store.errors import ConflictError, NotFoundError


class ServiceStore:
    """Services by name; tokens and URL passwords go through the SecretBox on the way in."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    async def create(self, service: ServiceIn) -> Service:
        base_url, secret_url = self._box.seal_url(service.base_url)
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO services (name, type, base_url, secret_url, auth_type, token,
                       inbound_token, timeout, max_attempts, backoff, cb_threshold, cb_cooldown,
                       response_queue, enabled)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                   RETURNING *""",
                service.name,
                service.type.value,
                base_url,
                secret_url,
                service.auth_type.value,
                self._box.seal_secret(service.token),
                self._box.seal_secret(service.inbound_token),
                service.timeout,
                service.max_attempts,
                service.backoff,
                service.cb_threshold,
                service.cb_cooldown,
                service.response_queue,
                service.enabled,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"service {service.name!r} already exists") from None
        assert row is not None  # INSERT … RETURNING returns the row or raises
        return Service.model_validate(dict(row))

    async def update(self, name: str, patch: ServicePatch) -> Service:
        """Change the given fields, after checking the service they make is consistent."""
        current = await self.get(name)
        changes = patch.model_dump(exclude_unset=True)
        merged = current.model_dump() | changes
        # Validation only needs to know whether a token exists; never decrypt for it.
        if merged.get("token") is not None and "token" not in changes:
            merged["token"] = "(stored)"
        ServiceIn.model_validate({k: v for k, v in merged.items() if k in ServiceIn.model_fields})
        columns = self._columns(patch, changes)
        if not columns:
            return current
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, 2))
        row = await self._pool.fetchrow(
            f"UPDATE services SET {assignments}, updated_at = now() WHERE name = $1 RETURNING *",
            name,
            *columns.values(),
        )
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return Service.model_validate(dict(row))

    def _columns(self, patch: ServicePatch, changes: dict[str, Any]) -> dict[str, Any]:
        """The columns a patch writes, credentials sealed."""
        columns: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "base_url":
                columns["base_url"], columns["secret_url"] = self._box.seal_url(value)
            elif field in ("token", "inbound_token"):
                columns[field] = self._box.seal_secret(getattr(patch, field))
            elif field == "auth_type":
                columns[field] = value.value
            else:
                columns[field] = value
        return columns

    async def all(self) -> list[Service]:
        rows = await self._pool.fetch("SELECT * FROM services ORDER BY name")
        return [Service.model_validate(dict(r)) for r in rows]

    async def get(self, name: str) -> Service:
        row = await self._pool.fetchrow("SELECT * FROM services WHERE name = $1", name)
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return Service.model_validate(dict(row))

    async def delete(self, name: str, *, with_rules: bool = False) -> int:
        """Delete a service; return how many of its rules went with it."""
        async with self._pool.acquire() as conn, conn.transaction():
            service_id = await conn.fetchval("SELECT id FROM services WHERE name = $1", name)
            if service_id is None:
                raise NotFoundError(f"no service named {name!r}")
            rules = await conn.fetchval(
                "SELECT count(*) FROM rules WHERE service_id = $1", service_id
            )
            if rules and not with_rules:
                raise ConflictError(
                    f"service {name!r} has {rules} rule(s): delete them first, or delete "
                    "the service with its rules"
                )
            await conn.execute("DELETE FROM rules WHERE service_id = $1", service_id)
            await conn.execute("DELETE FROM services WHERE id = $1", service_id)
            return int(rules)
