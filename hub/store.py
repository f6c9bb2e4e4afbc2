"""PostgreSQL access: the only module with SQL, besides the numbered migration files."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
from pydantic import SecretStr

from hub.models import (
    Circuit,
    CircuitReading,
    DeadLetter,
    DlqEntry,
    LogEntry,
    LogEntryIn,
    ReplayOutcome,
    Rule,
    RuleIn,
    RulePatch,
    Service,
    ServiceIn,
    ServicePatch,
    mask_url,
)
from hub.secrets import SecretBox

# Any fixed number works; it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x4855_4201


class StoreError(Exception):
    """An operation the database refused, with a message fit for the operator."""


class NotFoundError(StoreError):
    """The named row does not exist."""


class ConflictError(StoreError):
    """The change would break a uniqueness or reference constraint."""


@dataclass(frozen=True)
class RuleTarget:
    """An enabled rule with its enabled service, as the rule index holds them."""

    rule: Rule
    service: Service


@dataclass(frozen=True)
class IndexSnapshot:
    """All enabled rules and services at one configuration version."""

    version: int
    targets: list[RuleTarget]
    services: dict[int, Service]


@dataclass(frozen=True)
class StoreMetrics:
    """Counts behind the Prometheus metrics (see hub.api)."""

    attempts: list[dict[str, Any]]  # service, direction, status, n, latency_sum
    latency_buckets: list[dict[str, Any]]  # service, le, n (cumulative, outbound attempts)
    dlq_depth: dict[str, int]  # unresolved rows
    dead_lettered: dict[str, int]  # every row, resolved by a replay or not
    circuits: list[Circuit]


def migration_files() -> list[tuple[int, str, str]]:
    """The packaged migrations as (version, name, sql), in order."""
    files = resources.files("hub.migrations")
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; safe when several processes start at once."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            done = []
            for version, name, sql in migration_files():
                if version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        name,
                    )
                done.append(name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()


_INSERT_LOG = """
    INSERT INTO delivery_log (direction, service, rule_id, event_id, event_name, delivery_id,
        workflow_id, method, target, status, status_code, latency_ms, attempt, error,
        response_excerpt)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""


def _retry_in(cooldown: str) -> str:
    """SQL for the seconds a refused caller should wait.

    Open: until the cooldown has passed. Half-open: until the probe's slot expires, but no
    longer than one cooldown, since a probe usually answers long before its slot runs out.
    """
    return f"""
        (CASE state
            WHEN 'open' THEN GREATEST(0, EXTRACT(EPOCH FROM
                opened_at + make_interval(secs => {cooldown}) - now()))
            WHEN 'half_open' THEN LEAST({cooldown}, GREATEST(0, EXTRACT(EPOCH FROM
                probe_expires_at - now())))
            ELSE 0 END)::float8 AS retry_in"""


_RULE_SELECT = """
    SELECT r.id, r.event, s.name AS service, r.method, r.endpoint, r.template, r.enabled,
           r.created_at, r.updated_at
    FROM rules r JOIN services s ON s.id = r.service_id
"""


class Store:
    """Typed queries over one asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool, box: SecretBox | None = None) -> None:
        self.pool = pool
        self.box = box or SecretBox(None)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, dsn: str, *, box: SecretBox | None = None, min_size: int = 1, max_size: int = 10
    ) -> AsyncIterator["Store"]:
        """A store with its own pool, closed on exit."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            yield cls(pool, box)
        finally:
            await pool.close()

    # services

    def _sealed_url(self, url: str) -> tuple[str, str | None]:
        """(the URL to store in base_url, its encrypted form when it holds a password)."""
        masked = mask_url(url)
        return masked, (self.box.seal(url) if masked != url else None)

    def _sealed(self, secret: SecretStr | None) -> str | None:
        return self.box.seal(secret.get_secret_value()) if secret else None

    async def create_service(self, service: ServiceIn) -> Service:
        base_url, secret_url = self._sealed_url(service.base_url)
        try:
            row = await self.pool.fetchrow(
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
                self._sealed(service.token),
                self._sealed(service.inbound_token),
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
        return Service.model_validate(dict(row))

    async def update_service(self, name: str, patch: ServicePatch) -> Service:
        """Change the given fields, after checking the service they make is consistent."""
        current = await self.get_service(name)
        changes = patch.model_dump(exclude_unset=True)
        merged = current.model_dump() | changes
        # Validation only needs to know whether a token exists; never decrypt for it.
        if merged.get("token") is not None and "token" not in changes:
            merged["token"] = "(stored)"
        ServiceIn.model_validate({k: v for k, v in merged.items() if k in ServiceIn.model_fields})
        columns: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "base_url":
                columns["base_url"], columns["secret_url"] = self._sealed_url(value)
            elif field in ("token", "inbound_token"):
                columns[field] = self._sealed(getattr(patch, field))
            elif field == "auth_type":
                columns[field] = value.value
            else:
                columns[field] = value
        if not columns:
            return current
        assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, 2))
        row = await self.pool.fetchrow(
            f"UPDATE services SET {assignments}, updated_at = now() WHERE name = $1 RETURNING *",
            name,
            *columns.values(),
        )
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return Service.model_validate(dict(row))

    async def list_services(self) -> list[Service]:
        rows = await self.pool.fetch("SELECT * FROM services ORDER BY name")
        return [Service.model_validate(dict(r)) for r in rows]

    async def get_service(self, name: str) -> Service:
        row = await self.pool.fetchrow("SELECT * FROM services WHERE name = $1", name)
        if row is None:
            raise NotFoundError(f"no service named {name!r}")
        return Service.model_validate(dict(row))

    async def delete_service(self, name: str, *, with_rules: bool = False) -> int:
        """Delete a service; return how many of its rules went with it."""
        async with self.pool.acquire() as conn, conn.transaction():
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

    # rules

    async def create_rule(self, rule: RuleIn) -> Rule:
        row = await self.pool.fetchrow(
            """WITH inserted AS (
                   INSERT INTO rules (event, service_id, method, endpoint, template, enabled)
                   SELECT $1, s.id, $3, $4, $5, $6 FROM services s WHERE s.name = $2
                   RETURNING *)
               SELECT i.id, i.event, $2 AS service, i.method, i.endpoint, i.template,
                      i.enabled, i.created_at, i.updated_at
               FROM inserted i""",
            rule.event,
            rule.service,
            rule.method.value,
            rule.endpoint,
            rule.template,
            rule.enabled,
        )
        if row is None:
            raise NotFoundError(f"no service named {rule.service!r}")
        return Rule.model_validate(dict(row))

    async def list_rules(self, *, service: str | None = None) -> list[Rule]:
        rows = await self.pool.fetch(
            _RULE_SELECT + " WHERE ($1::text IS NULL OR s.name = $1) ORDER BY r.id", service
        )
        return [Rule.model_validate(dict(r)) for r in rows]

    async def get_rule(self, rule_id: int) -> Rule:
        row = await self.pool.fetchrow(_RULE_SELECT + " WHERE r.id = $1", rule_id)
        if row is None:
            raise NotFoundError(f"no rule with id {rule_id}")
        return Rule.model_validate(dict(row))

    async def update_rule(self, rule_id: int, patch: RulePatch) -> Rule:
        """Change the given fields, after checking the rule they make is valid."""
        current = await self.get_rule(rule_id)
        merged = RuleIn.model_validate(
            current.model_dump(include=set(RuleIn.model_fields))
            | patch.model_dump(exclude_unset=True)
        )
        row = await self.pool.fetchrow(
            """WITH updated AS (
                   UPDATE rules r SET event = $2, service_id = s.id, method = $4, endpoint = $5,
                       template = $6, enabled = $7, updated_at = now()
                   FROM services s WHERE r.id = $1 AND s.name = $3
                   RETURNING r.*)
               SELECT u.id, u.event, $3 AS service, u.method, u.endpoint, u.template,
                      u.enabled, u.created_at, u.updated_at
               FROM updated u""",
            rule_id,
            merged.event,
            merged.service,
            merged.method.value,
            merged.endpoint,
            merged.template,
            merged.enabled,
        )
        if row is None:
            raise NotFoundError(f"no service named {merged.service!r}")
        return Rule.model_validate(dict(row))

    async def delete_rule(self, rule_id: int) -> None:
        status = await self.pool.execute("DELETE FROM rules WHERE id = $1", rule_id)
        if status == "DELETE 0":
            raise NotFoundError(f"no rule with id {rule_id}")

    async def config_version(self) -> int:
        """The version that the last committed change of services or rules produced."""
        return await self.pool.fetchval("SELECT version FROM config_version")

    async def index_snapshot(self) -> IndexSnapshot:
        """Enabled rules and services, read in one snapshot together with its version."""
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            version = await conn.fetchval("SELECT version FROM config_version")
            service_rows = await conn.fetch("SELECT * FROM services WHERE enabled")
            rule_rows = await conn.fetch(
                _RULE_SELECT + " WHERE r.enabled AND s.enabled ORDER BY r.id"
            )
        services = {r["id"]: Service.model_validate(dict(r)) for r in service_rows}
        by_name = {s.name: s for s in services.values()}
        targets = []
        for row in rule_rows:
            rule = Rule.model_validate(dict(row))
            targets.append(RuleTarget(rule=rule, service=by_name[rule.service]))
        return IndexSnapshot(version=version, targets=targets, services=services)

    # delivery log

    async def add_log(self, entry: LogEntryIn) -> None:
        await _insert_log(self.pool, entry)

    async def list_logs(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        direction: str | None = None,
        event_id: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[LogEntry]:
        """Newest first; pass the last id seen as ``before_id`` for the next page."""
        rows = await self.pool.fetch(
            """SELECT * FROM delivery_log
               WHERE ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR status = $2)
                 AND ($3::text IS NULL OR direction = $3)
                 AND ($4::text IS NULL OR event_id = $4)
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
                 AND ($6::bigint IS NULL OR id < $6)
               ORDER BY id DESC LIMIT $7""",
            service,
            status,
            direction,
            event_id,
            since,
            before_id,
            limit,
        )
        return [LogEntry.model_validate(dict(r)) for r in rows]

    async def add_inbound_log(self, entry: LogEntryIn) -> None:
        """Log an inbound message, correlated to the outbound delivery its delivery_id names."""
        await self.pool.execute(
            """INSERT INTO delivery_log (direction, service, rule_id, event_id, event_name,
                   delivery_id, workflow_id, method, target, status, status_code, latency_ms,
                   attempt, error, response_excerpt)
               SELECT $1, $2, COALESCE($3, o.rule_id), COALESCE($4, o.event_id),
                      COALESCE($5, o.event_name), $6, COALESCE($7, o.workflow_id), $8, $9, $10,
                      $11, $12, $13, $14, $15
               FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (
                   SELECT rule_id, event_id, event_name, workflow_id FROM delivery_log
                   WHERE delivery_id = $6 AND direction = 'out'
                   ORDER BY id DESC LIMIT 1) AS o ON true""",
            *_log_values(entry),
        )

    async def last_network_error(self, delivery_id: str, workflow_id: str) -> str | None:
        """The newest error of an attempt that reached the network (it has a latency)."""
        return await self.pool.fetchval(
            """SELECT error FROM delivery_log
               WHERE delivery_id = $1 AND workflow_id = $2 AND status = 'failed'
                 AND latency_ms IS NOT NULL
               ORDER BY id DESC LIMIT 1""",
            delivery_id,
            workflow_id,
        )

    async def prune_logs(self, older_than_days: int) -> int:
        """Delete log rows past the retention period; return how many."""
        status = await self.pool.execute(
            "DELETE FROM delivery_log WHERE created_at < now() - make_interval(days => $1)",
            older_than_days,
        )
        return int(status.split()[-1])

    # health and metrics

    async def ping(self) -> None:
        """Raise unless the database answers."""
        await self.pool.fetchval("SELECT 1")

    async def metrics(self, latency_buckets_ms: list[float]) -> StoreMetrics:
        """Aggregates for /metrics, over what the log retention keeps."""
        async with self.pool.acquire() as conn:
            attempts = await conn.fetch(
                """SELECT service, direction, status, count(*) AS n,
                          coalesce(sum(latency_ms), 0) AS latency_sum
                   FROM delivery_log GROUP BY service, direction, status"""
            )
            buckets = await conn.fetch(
                """SELECT s.service, b.le, count(l.id) AS n
                   FROM unnest($1::float8[]) AS b(le)
                   CROSS JOIN (SELECT DISTINCT service FROM delivery_log
                               WHERE direction = 'out') AS s
                   LEFT JOIN delivery_log l ON l.service = s.service AND l.direction = 'out'
                        AND l.latency_ms IS NOT NULL AND l.latency_ms <= b.le
                   GROUP BY s.service, b.le ORDER BY s.service, b.le""",
                latency_buckets_ms,
            )
            dlq = await conn.fetch(
                """SELECT service, count(*) FILTER (WHERE resolved_at IS NULL) AS depth,
                          count(*) AS total
                   FROM dlq GROUP BY service"""
            )
        return StoreMetrics(
            attempts=[dict(r) for r in attempts],
            latency_buckets=[dict(r) for r in buckets],
            dlq_depth={r["service"]: r["depth"] for r in dlq},
            dead_lettered={r["service"]: r["total"] for r in dlq},
            circuits=await self.list_circuits(),
        )

    # circuit breaker: every transition is one statement, so concurrent workers serialise on
    # the row lock and re-check their conditions against the committed state.

    async def admit_circuit(
        self, service_id: int, *, cooldown: float, probe_ttl: float, owner: str
    ) -> CircuitReading | None:
        """Grant the half-open probe to owner if the circuit may send one; else read it."""
        row = await self.pool.fetchrow(
            f"""WITH claim AS (
                    UPDATE circuit_state
                    SET state = 'half_open', probe_owner = $4,
                        probe_expires_at = now() + make_interval(secs => $3), updated_at = now()
                    WHERE service_id = $1
                      AND ((state = 'open' AND opened_at + make_interval(secs => $2) <= now())
                        OR (state = 'half_open' AND probe_expires_at <= now()))
                    RETURNING state, failures, opened_at, probe_expires_at, true AS probe),
                reading AS (
                    SELECT * FROM claim
                    UNION ALL
                    SELECT state, failures, opened_at, probe_expires_at, false FROM circuit_state
                    WHERE service_id = $1 AND NOT EXISTS (SELECT 1 FROM claim))
                SELECT state, failures, opened_at, probe, {_retry_in("$2")} FROM reading""",
            service_id,
            cooldown,
            probe_ttl,
            owner,
        )
        return CircuitReading.model_validate(dict(row)) if row else None

    async def record_attempt(
        self,
        log: LogEntryIn,
        *,
        service_id: int,
        healthy: bool,
        probe_owner: str | None,
        threshold: int,
        cooldown: float,
    ) -> CircuitReading | None:
        """Write an attempt's log row and feed its outcome to the circuit, in one round trip.

        closed: a failure counts, the threshold-th opens; a success resets the count.
        half_open: only the probe's outcome counts: success closes, failure re-opens.
        open: nothing changes (late results of calls made before it opened).
        """
        row = await self.pool.fetchrow(
            f"""WITH log AS ({_INSERT_LOG}),
                updated AS (
                    UPDATE circuit_state SET
                        state = CASE
                            WHEN state = 'half_open' AND $16 THEN 'closed'
                            WHEN state = 'half_open' OR (failures + 1 >= $18 AND NOT $16)
                            THEN 'open'
                            ELSE state END,
                        failures = CASE
                            WHEN $16 THEN 0
                            WHEN state = 'closed' THEN failures + 1
                            ELSE failures END,
                        opened_at = CASE
                            WHEN NOT $16 AND (state = 'half_open' OR failures + 1 >= $18)
                            THEN now()
                            WHEN $16 THEN NULL
                            ELSE opened_at END,
                        probe_owner = CASE WHEN state = 'half_open' THEN NULL ELSE probe_owner END,
                        probe_expires_at = CASE
                            WHEN state = 'half_open' THEN NULL ELSE probe_expires_at END,
                        updated_at = now()
                    WHERE service_id = $19
                      AND ((state = 'closed' AND (NOT $16 OR failures > 0))
                        OR (state = 'half_open' AND probe_owner = $17))
                    RETURNING state, failures, opened_at, probe_expires_at),
                reading AS (
                    SELECT * FROM updated
                    UNION ALL
                    SELECT state, failures, opened_at, probe_expires_at FROM circuit_state
                    WHERE service_id = $19 AND NOT EXISTS (SELECT 1 FROM updated))
                SELECT state, failures, opened_at, {_retry_in("$20")} FROM reading""",
            *_log_values(log),
            healthy,
            probe_owner,
            threshold,
            service_id,
            cooldown,
        )
        return CircuitReading.model_validate(dict(row)) if row else None

    async def list_circuits(self) -> list[Circuit]:
        rows = await self.pool.fetch(
            """SELECT s.name AS service, s.cb_threshold AS threshold, s.cb_cooldown AS cooldown,
                      c.state, c.failures, c.opened_at,
                      CASE c.state
                          WHEN 'open' THEN GREATEST(0, EXTRACT(EPOCH FROM
                              c.opened_at + make_interval(secs => s.cb_cooldown) - now()))
                          WHEN 'half_open' THEN LEAST(s.cb_cooldown, GREATEST(0,
                              EXTRACT(EPOCH FROM c.probe_expires_at - now())))
                          ELSE 0 END::float8 AS retry_in
               FROM circuit_state c JOIN services s ON s.id = c.service_id
               ORDER BY s.name"""
        )
        return [Circuit.model_validate(dict(r)) for r in rows]

    async def reset_circuits(self, name: str | None = None) -> int:
        """Close one service's circuit (or all, with no name); return how many were reset."""
        status = await self.pool.execute(
            """UPDATE circuit_state c
               SET state = 'closed', failures = 0, opened_at = NULL, probe_owner = NULL,
                   probe_expires_at = NULL, updated_at = now()
               FROM services s
               WHERE s.id = c.service_id AND ($1::text IS NULL OR s.name = $1)""",
            name,
        )
        count = int(status.split()[-1])
        if name is not None and count == 0:
            raise NotFoundError(f"no service named {name!r}")
        return count

    # dead-letter queue

    async def add_dead_letter(self, dead: DeadLetter, log: LogEntryIn | None = None) -> int:
        """Record a failed delivery (and its log row) once per workflow; return the row id."""
        d = dead.delivery
        async with self.pool.acquire() as conn, conn.transaction():
            dlq_id = await conn.fetchval(
                """INSERT INTO dlq (event_id, event_name, event, rule_id, service, method,
                       endpoint, payload, error, attempts, workflow_id, delivery_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
            )
            if dlq_id is None:
                return await conn.fetchval(
                    "SELECT id FROM dlq WHERE workflow_id = $1 AND delivery_id = $2",
                    dead.workflow_id,
                    d.id,
                )
            if log is not None:
                await _insert_log(conn, log)
            return dlq_id

    async def list_dead_letters(
        self,
        *,
        service: str | None = None,
        event: str | None = None,
        include_resolved: bool = False,
        limit: int = 100,
    ) -> list[DlqEntry]:
        """Newest first; unresolved only unless asked."""
        rows = await self.pool.fetch(
            """SELECT * FROM dlq
               WHERE ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR event_name = $2 OR event_id = $2)
                 AND ($3 OR resolved_at IS NULL)
               ORDER BY id DESC LIMIT $4""",
            service,
            event,
            include_resolved,
            limit,
        )
        return [_dlq_entry(r) for r in rows]

    async def dead_letter_ids(
        self, *, service: str | None = None, event: str | None = None, limit: int = 100_000
    ) -> list[int]:
        """Unresolved rows matching a filter, oldest first (the order a replay should go)."""
        rows = await self.pool.fetch(
            """SELECT id FROM dlq
               WHERE resolved_at IS NULL
                 AND ($1::text IS NULL OR service = $1)
                 AND ($2::text IS NULL OR event_name = $2 OR event_id = $2)
               ORDER BY id LIMIT $3""",
            service,
            event,
            limit,
        )
        return [r["id"] for r in rows]

    async def begin_replay(self, dlq_id: int) -> tuple[DlqEntry, int]:
        """Count a replay of an unresolved row; return the row and the replay's number."""
        row = await self.pool.fetchrow(
            """UPDATE dlq SET replay_count = replay_count + 1
               WHERE id = $1 AND resolved_at IS NULL RETURNING *""",
            dlq_id,
        )
        if row is None:
            entry = await self.get_dead_letter(dlq_id)  # raises NotFoundError
            raise ConflictError(f"DLQ entry {entry.id} is already resolved")
        entry = _dlq_entry(row)
        return entry, entry.replay_count

    async def finish_replay(self, outcome: ReplayOutcome) -> None:
        """Resolve the row if the replay delivered; else keep it with the replay's error."""
        await self.pool.execute(
            """UPDATE dlq SET
                   resolved_at = CASE WHEN $2 THEN now() ELSE resolved_at END,
                   error = CASE WHEN $2 THEN error ELSE $3 END,
                   attempts = CASE WHEN $2 THEN attempts ELSE $4 END
               WHERE id = $1""",
            outcome.dlq_id,
            outcome.delivered,
            outcome.error or "",
            outcome.attempts,
        )

    async def delete_dead_letter(self, dlq_id: int) -> None:
        status = await self.pool.execute("DELETE FROM dlq WHERE id = $1", dlq_id)
        if status == "DELETE 0":
            raise NotFoundError(f"no DLQ entry with id {dlq_id}")

    async def flush_dead_letters(self, older_than: datetime) -> int:
        """Delete rows created before a time, resolved or not; return how many."""
        status = await self.pool.execute("DELETE FROM dlq WHERE created_at < $1", older_than)
        return int(status.split()[-1])

    async def get_dead_letter(self, dlq_id: int) -> DlqEntry:
        row = await self.pool.fetchrow("SELECT * FROM dlq WHERE id = $1", dlq_id)
        if row is None:
            raise NotFoundError(f"no DLQ entry with id {dlq_id}")
        return _dlq_entry(row)


async def _insert_log(conn: asyncpg.Pool | asyncpg.Connection, entry: LogEntryIn) -> None:
    await conn.execute(_INSERT_LOG, *_log_values(entry))


def _log_values(entry: LogEntryIn) -> tuple[Any, ...]:
    """The 15 parameters of _INSERT_LOG, in order."""
    return (
        entry.direction.value,
        entry.service,
        entry.rule_id,
        entry.event_id,
        entry.event_name,
        entry.delivery_id,
        entry.workflow_id,
        entry.method,
        entry.target,
        entry.status.value,
        entry.status_code,
        entry.latency_ms,
        entry.attempt,
        entry.error,
        entry.response_excerpt,
    )


def _dlq_entry(row: asyncpg.Record) -> DlqEntry:
    values: dict[str, Any] = dict(row)
    values["event"] = json.loads(values["event"])
    return DlqEntry.model_validate(values)
