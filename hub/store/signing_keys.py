"""The signing_keys table: the keys that sign a service's deliveries, sealed on write.

A service has at most one current key (no expiry). Rotating gives the current key (and any
older one still in its grace period) an expiry no later than now + grace and makes a new
current key; keys whose expiry has passed are deleted on the next change, and are never
read as active before that.
"""

from collections.abc import Sequence
from datetime import timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.core.models import SigningKey
from hub.core.signing import KeyMaterial, SigningScheme, generate
from hub.secrets import SecretBox

Connection = asyncpg.Connection | PoolConnectionProxy

ACTIVE = "(expires_at IS NULL OR expires_at > now())"
"""A key that still signs."""


async def active_keys(
    conn: Connection | asyncpg.Pool, service_ids: Sequence[int] | None = None
) -> dict[int, list[SigningKey]]:
    """Active keys by service id (all services, or those given), current first, then newest."""
    rows = await conn.fetch(
        f"""SELECT * FROM signing_keys
            WHERE {ACTIVE} AND ($1::bigint[] IS NULL OR service_id = ANY($1::bigint[]))
            ORDER BY service_id, expires_at DESC NULLS FIRST, id DESC""",
        None if service_ids is None else list(service_ids),
    )
    keys: dict[int, list[SigningKey]] = {}
    for row in rows:
        keys.setdefault(row["service_id"], []).append(SigningKey.model_validate(dict(row)))
    return keys


class SigningKeyStore:
    """Issues and removes keys inside the caller's transaction (the service row locked)."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    async def issue(
        self, conn: Connection, service_id: int, scheme: SigningScheme, grace: timedelta
    ) -> KeyMaterial:
        """Make a new current key; the keys before it sign for at most ``grace`` more."""
        material = generate(scheme)
        sealed = self._box.seal(material.secret)
        await conn.execute(
            """UPDATE signing_keys
               SET expires_at = LEAST(COALESCE(expires_at, 'infinity'), now() + $2::interval)
               WHERE service_id = $1""",
            service_id,
            grace,
        )
        await conn.execute(
            "DELETE FROM signing_keys WHERE service_id = $1 AND NOT " + ACTIVE, service_id
        )
        await conn.execute(
            """INSERT INTO signing_keys (service_id, scheme, secret, public_key)
               VALUES ($1, $2, $3, $4)""",
            service_id,
            scheme.value,
            sealed,
            material.public_key,
        )
        return material

    async def remove(self, conn: Connection, service_id: int) -> int:
        """Delete every key of the service: its deliveries go out unsigned."""
        status = await conn.execute("DELETE FROM signing_keys WHERE service_id = $1", service_id)
        return int(status.split()[-1])
