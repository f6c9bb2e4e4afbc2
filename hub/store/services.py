"""The services table: external APIs and brokers, their credentials sealed on write."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr

from hub.core.egress import EgressPolicy, EgressRefused
from hub.core.models import Service, ServiceIn, ServicePatch, SigningKey
from hub.core.models.service import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS
from hub.core.signing import KeyMaterial, SigningScheme
from hub.secrets import SecretBox
from hub.store.errors import ConflictError, NotFoundError, StoreError
from hub.store.signing_keys import Connection, SigningKeyStore, active_keys

_SEALED = ("token", "inbound_token", "inbound_secret")


class ServiceStore:
    """Services by name; tokens, secrets and URL passwords go through the SecretBox on the
    way in. A service comes with its active signing keys (metadata; the secrets stay sealed).
    """

    def __init__(
        self, pool: asyncpg.Pool, box: SecretBox, egress: EgressPolicy | None = None
    ) -> None:
        self._pool = pool
        self._box = box
        self._egress = egress
        self._keys = SigningKeyStore(box)

    async def create(self, service: ServiceIn) -> Service:
        """Insert the service and, with ``sign``, its first signing key, in one transaction."""
        self._check_egress(service.base_url)
        base_url, secret_url = self._box.seal_url(service.base_url)
        sealed = [self._box.seal_secret(getattr(service, field)) for field in _SEALED]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """INSERT INTO services (name, type, base_url, secret_url, auth_type, token,
                           inbound_token, inbound_secret, timeout, max_attempts, backoff,
                           cb_threshold, cb_cooldown, response_queue, enabled, weight, rate,
                           max_hold)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                           $16, $17, $18)
                       RETURNING *""",
                    service.name,
                    service.type.value,
                    base_url,
                    secret_url,
                    service.auth_type.value,
                    *sealed,
                    service.timeout,
                    service.max_attempts,
                    service.backoff,
                    service.cb_threshold,
                    service.cb_cooldown,
                    service.response_queue,
                    service.enabled,
                    service.weight,
                    service.rate,
                    service.max_hold,
                )
                assert row is not None  # INSERT … RETURNING returns the row or raises
                issued = None
                if service.sign is not None:
                    issued = await self._keys.issue(conn, row["id"], service.sign, timedelta(0))
                return await _with_keys(conn, row, issued)
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"service {service.name!r} already exists") from None

    async def update(self, name: str, patch: ServicePatch) -> Service:
        """Change the given fields, after checking the service they make is consistent.

        ``sign`` makes a key (none when the service already signs with that scheme; another
        scheme is a rotation with the default grace); an explicit null removes every key.
        """
        self._check_egress(patch.base_url)
        current = await self.get(name)
        changes = patch.model_dump(exclude_unset=True)
        merged = current.model_dump() | changes
        # Validation only needs to know whether a token exists; never decrypt for it.
        if merged.get("token") is not None and "token" not in changes:
            merged["token"] = "(stored)"
        if "inbound_secret" not in changes:
            merged.pop("inbound_secret", None)  # sealed: it was checked when it was written
        ServiceIn.model_validate({k: v for k, v in merged.items() if k in ServiceIn.model_fields})
        columns = self._columns(patch, {k: v for k, v in changes.items() if k != "sign"})
        if not columns and "sign" not in changes:
            return current
        async with self._pool.acquire() as conn, conn.transaction():
            if columns:
                assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, 2))
                row = await conn.fetchrow(
                    f"UPDATE services SET {assignments}, updated_at = now() WHERE name = $1 "
                    "RETURNING *",
                    name,
                    *columns.values(),
                )
            else:
                row = await _locked(conn, name)
            if row is None:
                raise NotFoundError(f"no service named {name!r}")
            issued = await self._sign(conn, row["id"], patch.sign) if "sign" in changes else None
            return await _with_keys(conn, row, issued)

    async def set_paused(self, name: str, paused: bool) -> Service:
        """Pause (hold every delivery) or resume a service; a no-op when it already is.

        The configuration version moves with it, so every worker's index hears of it.
        """
        row = await self._pool.fetchrow(
            """UPDATE services SET paused_at = CASE WHEN $2 THEN coalesce(paused_at, now()) END,
                   updated_at = now()
               WHERE name = $1 RETURNING *""",
            name,
            paused,
        )
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return _service(row, await active_keys(self._pool, [row["id"]]))

    async def rotate_secret(self, name: str, grace: timedelta) -> Service:
        """A new signing key of the current one's scheme; the old ones sign for ``grace`` more.

        The service returned carries the new secret (or public key) in ``issued_secret``.
        """
        if not timedelta(0) <= grace <= timedelta(seconds=MAX_GRACE_SECONDS):
            raise StoreError(f"grace must be between 0 and {MAX_GRACE_SECONDS // 86400} days")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await _locked(conn, name)
            if row is None:
                raise NotFoundError(f"no service named {name!r}")
            current = _current_scheme(await active_keys(conn, [row["id"]]), row["id"])
            if current is None:
                raise ConflictError(
                    f"service {name!r} does not sign its deliveries: turn signing on first"
                )
            issued = await self._keys.issue(conn, row["id"], current, grace)
            return await _with_keys(conn, row, issued)

    async def _sign(
        self, conn: Connection, service_id: int, scheme: SigningScheme | None
    ) -> KeyMaterial | None:
        """Apply a patch's ``sign`` to the locked service; the new key's material, if any."""
        if scheme is None:
            await self._keys.remove(conn, service_id)
            return None
        current = _current_scheme(await active_keys(conn, [service_id]), service_id)
        if current is scheme:
            return None
        grace = timedelta(seconds=DEFAULT_GRACE_SECONDS if current else 0)
        return await self._keys.issue(conn, service_id, scheme, grace)

    def _columns(self, patch: ServicePatch, changes: dict[str, Any]) -> dict[str, Any]:
        """The columns a patch writes, credentials sealed."""
        columns: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "base_url":
                columns["base_url"], columns["secret_url"] = self._box.seal_url(value)
            elif field in _SEALED:
                columns[field] = self._box.seal_secret(getattr(patch, field))
            elif field == "auth_type":
                columns[field] = value.value
            else:
                columns[field] = value
        return columns

    def _check_egress(self, url: str | None) -> None:
        """Refuse a URL whose host is a literal address the egress guard refuses, with the
        guard's message (host names are checked when a delivery resolves them)."""
        if url is not None and self._egress is not None:
            try:
                self._egress.check_url(url)
            except EgressRefused as err:
                raise StoreError(str(err)) from None

    async def all(self) -> list[Service]:
        rows = await self._pool.fetch("SELECT * FROM services ORDER BY name")
        keys = await active_keys(self._pool)
        return [_service(r, keys) for r in rows]

    async def get(self, name: str) -> Service:
        row = await self._pool.fetchrow("SELECT * FROM services WHERE name = $1", name)
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return _service(row, await active_keys(self._pool, [row["id"]]))

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


async def _locked(conn: Connection, name: str) -> asyncpg.Record | None:
    """The service's row, locked until the transaction ends (key changes are serialised)."""
    return await conn.fetchrow("SELECT * FROM services WHERE name = $1 FOR UPDATE", name)


def _current_scheme(keys: dict[int, list[SigningKey]], service_id: int) -> SigningScheme | None:
    """The scheme of the service's current key (the one without expiry), if it has one."""
    current = [k for k in keys.get(service_id, []) if k.expires_at is None]
    return current[0].scheme if current else None


def _service(row: asyncpg.Record, keys: dict[int, list[SigningKey]]) -> Service:
    return Service.model_validate(dict(row) | {"signing_keys": keys.get(row["id"], [])})


async def _with_keys(conn: Connection, row: asyncpg.Record, issued: KeyMaterial | None) -> Service:
    """The saved service with its keys, read in the saving transaction, and any new secret."""
    service = _service(row, await active_keys(conn, [row["id"]]))
    if issued is not None:
        service.issued_secret = SecretStr(issued.shown)
    return service
