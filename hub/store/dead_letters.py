"""The dead-letter queue: deliveries that failed for good, kept for inspection and replay."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from hub.core.models import DeadLetter, DlqEntry, LogEntryIn, ReplayOutcome
from hub.store.delivery_log import LogStore
from hub.store.errors import ConflictError, NotFoundError


class DeadLetterStore:
    """One row per failed delivery and workflow; a replay resolves it when it delivers."""

    def __init__(self, pool: asyncpg.Pool, log: LogStore) -> None:
        self._pool = pool
        self._log = log

    async def add(self, dead: DeadLetter, log: LogEntryIn | None = None) -> tuple[int, bool]:
        """Record a failed delivery (and its log row) once per workflow; return the row id,
        and whether this call wrote it (False when a retry finds the row already there).

        The row keeps its own copy of the event data and payload, claim-checked or not.
        """
        d = dead.delivery
        async with self._pool.acquire() as conn, conn.transaction():
            dlq_id: int | None = await conn.fetchval(
                """INSERT INTO dlq (event_id, event_name, event, rule_id, service, method,
                       endpoint, payload, error, attempts, workflow_id, delivery_id)
                   VALUES ($1, $2,
                       CASE WHEN $14::text IS NULL THEN $3::jsonb
                       ELSE jsonb_set($3::jsonb, '{data}', COALESCE(
                           (SELECT body::jsonb FROM claims WHERE key = $14), '{}'))
                       END,
                       $4, $5, $6, $7,
                       COALESCE($8, (SELECT body FROM claims WHERE key = $13)),
                       $9, $10, $11, $12)
                   ON CONFLICT (workflow_id, delivery_id) DO NOTHING
                   RETURNING id""",
                d.event_id,
                d.event_name,
                dead.event.model_dump_json(),
                d.rule_id,
                d.service,
                d.method.value,
                d.endpoint,
                d.payload,
                dead.error,
                dead.attempts,
                dead.workflow_id,
                d.id,
                d.payload_ref,
                dead.data_ref,
            )
            if dlq_id is None:
                existing: int = await conn.fetchval(
                    "SELECT id FROM dlq WHERE workflow_id = $1 AND delivery_id = $2",
                    dead.workflow_id,
                    d.id,
                )
                return existing, False
            if log is not None:
                await self._log.add(log, conn)
            return dlq_id, True

    async def recent(
        self,
        *,
        service: str | None = None,
        event: str | None = None,
        include_resolved: bool = False,
        limit: int = 100,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[DlqEntry]:
        """Newest first; unresolved only unless asked; optionally bounded by creation time."""
        rows = await self._pool.fetch(
            """SELECT * FROM dlq
               WHERE ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR event_name = $2 OR event_id = $2)
                 AND ($3 OR resolved_at IS NULL)
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
                 AND ($6::timestamptz IS NULL OR created_at < $6)
               ORDER BY id DESC LIMIT $4""",
            service,
            event,
            include_resolved,
            limit,
            created_after,
            created_before,
        )
        return [_dlq_entry(r) for r in rows]

    async def ids(
        self,
        *,
        service: str | None = None,
        event: str | None = None,
        limit: int = 100_000,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[int]:
        """Unresolved rows matching a filter, oldest first (the order a replay should go)."""
        rows = await self._pool.fetch(
            """SELECT id FROM dlq
               WHERE resolved_at IS NULL
                 AND ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR event_name = $2 OR event_id = $2)
                 AND ($4::timestamptz IS NULL OR created_at >= $4)
                 AND ($5::timestamptz IS NULL OR created_at < $5)
               ORDER BY id LIMIT $3""",
            service,
            event,
            limit,
            created_after,
            created_before,
        )
        return [r["id"] for r in rows]

    async def begin_replay(self, dlq_id: int) -> tuple[DlqEntry, int]:
        """Count a replay of an unresolved row; return the row and the replay's number."""
        row = await self._pool.fetchrow(
            """UPDATE dlq SET replay_count = replay_count + 1
               WHERE id = $1 AND resolved_at IS NULL RETURNING *""",
            dlq_id,
        )
        if row is None:
            entry = await self.get(dlq_id)  # raises NotFoundError
            raise ConflictError(f"DLQ entry {entry.id} is already resolved")
        entry = _dlq_entry(row)
        return entry, entry.replay_count

    async def finish_replay(self, outcome: ReplayOutcome) -> str | None:
        """Resolve the row if the replay delivered; else keep it with the replay's error.
        Return the row's service (None if the row was deleted meanwhile)."""
        service: str | None = await self._pool.fetchval(
            """UPDATE dlq SET
                   resolved_at = CASE WHEN $2 THEN now() ELSE resolved_at END,
                   error = CASE WHEN $2 THEN error ELSE $3 END,
                   attempts = CASE WHEN $2 THEN attempts ELSE $4 END
               WHERE id = $1 RETURNING service""",
            outcome.dlq_id,
            outcome.delivered,
            outcome.error or "",
            outcome.attempts,
        )
        return service

    async def delete(self, dlq_id: int) -> None:
        status = await self._pool.execute("DELETE FROM dlq WHERE id = $1", dlq_id)
        if status == "DELETE 0":
            raise NotFoundError(f"no DLQ entry with id {dlq_id}")

    async def flush(self, older_than: datetime) -> int:
        """Delete rows created before a time, resolved or not; return how many."""
        status = await self._pool.execute("DELETE FROM dlq WHERE created_at < $1", older_than)
        return int(status.split()[-1])

    async def get(self, dlq_id: int) -> DlqEntry:
        row = await self._pool.fetchrow("SELECT * FROM dlq WHERE id = $1", dlq_id)
        if row is None:
            raise NotFoundError(f"no DLQ entry with id {dlq_id}")
        return _dlq_entry(row)


def _dlq_entry(row: asyncpg.Record) -> DlqEntry:
    values: dict[str, Any] = dict(row)
    values["event"] = json.loads(values["event"])
    return DlqEntry.model_validate(values)
