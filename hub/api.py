"""The HTTP API: ingest (events, webhooks), administration, health and Prometheus metrics.

Every route except ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer
$HUB_API_TOKEN``; ``/webhooks/{service}`` takes that service's own inbound token instead.
No response carries a credential: services are shown as ``ServiceOut``, which only says
whether a token is set, and validation errors never echo the input back.
"""

import asyncio
import json
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from secrets import compare_digest
from typing import Annotated, Any, Literal, Self
from uuid import uuid4

import asyncpg
import uvicorn
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.service import RPCError

from hub import __version__
from hub.client import HubClient, connect_temporal
from hub.config import Settings
from hub.devstack import database_url
from hub.dlq import DEFAULT_CONCURRENCY, Replayer
from hub.models import (
    AuthType,
    Circuit,
    CircuitState,
    Direction,
    DlqEntry,
    EmitResult,
    EventId,
    EventName,
    LogEntry,
    LogEntryIn,
    LogStatus,
    ReplayCounts,
    ReplayOutcome,
    Rule,
    RuleIn,
    RulePatch,
    Service,
    ServiceIn,
    ServiceName,
    ServicePatch,
    ServiceType,
    check_json_value,
    mask_url,
)
from hub.secrets import SecretBox, SecretKeyError
from hub.store import ConflictError, NotFoundError, Store, StoreError, StoreMetrics

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
"""Largest request body accepted (413 beyond it); events are notifications, not uploads."""
WEBHOOK_EXCERPT_CHARS = 500
LATENCY_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"
HEALTH_TIMEOUT = timedelta(seconds=3)
MAX_ID = 2**63 - 1  # PostgreSQL bigserial

RowId = Annotated[int, Path(ge=1, le=MAX_ID, examples=[1])]
ServiceNamePath = Annotated[ServiceName, Path(examples=["crm"])]
FilterText = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00]+$")
]
EmitOutcome = Literal["started", "duplicate", "no_match"]
EMIT_OUTCOMES: tuple[EmitOutcome, ...] = ("started", "duplicate", "no_match")

_service_name = TypeAdapter(ServiceName)


def _utc(value: datetime) -> datetime:
    """Aware UTC (naive input is taken as UTC), so the database never guesses a zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


# models: request bodies and responses

EXAMPLES: dict[str, dict[str, Example]] = {
    "event": {
        "order": {
            "summary": "An event with its own id",
            "value": {"name": "order.created", "id": "order-42", "data": {"id": 42, "total": 9.5}},
        }
    },
    "service": {
        "http": {
            "summary": "An HTTP API with a bearer token that also takes webhooks",
            "value": {
                "name": "crm",
                "base_url": "https://crm.example.com/api",
                "auth_type": "bearer",
                "token": "s3cret",
                "inbound_token": "hook-s3cret",
                "max_attempts": 3,
            },
        }
    },
    "service_patch": {"timeout": {"summary": "Slower calls", "value": {"timeout": 10}}},
    "rule": {
        "orders": {
            "summary": "Order events to the CRM",
            "value": {
                "event": "order.*",
                "service": "crm",
                "endpoint": "/orders",
                "template": '{"id": {{data.id}}, "event": "{{name}}"}',
            },
        }
    },
    "rule_patch": {"disable": {"summary": "Stop matching", "value": {"enabled": False}}},
    "replay": {"service": {"summary": "One service's rows", "value": {"service": "crm"}}},
}


class Problem(BaseModel):
    """The body of every error response except 422."""

    detail: str


class EventIn(BaseModel):
    """An event as a producer posts it; the id defaults to a new UUID."""

    model_config = ConfigDict(extra="forbid")

    name: EventName
    data: dict[str, Any] = Field(default_factory=dict)
    id: EventId | None = None
    occurred_at: datetime | None = None

    @field_validator("data")
    @classmethod
    def _carriable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)
        return value


class EmitOut(BaseModel):
    """What submitting an event did (EmitResult without the workflow's result, plus a word)."""

    event_id: str
    workflow_id: str | None
    matched: bool
    duplicate: bool
    services: list[str]
    detail: str


class ServiceOut(BaseModel):
    """A service as the API shows it: whether credentials are set, never the credentials."""

    id: int
    name: str
    type: ServiceType
    base_url: str = Field(description="With any password masked.")
    auth_type: AuthType
    has_token: bool
    has_inbound_token: bool
    timeout: float
    max_attempts: int
    backoff: float
    cb_threshold: int
    cb_cooldown: float
    response_queue: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, service: Service) -> Self:
        values = service.model_dump(exclude={"token", "inbound_token", "secret_url"})
        return cls.model_validate(
            values
            | {
                "base_url": mask_url(service.base_url),
                "has_token": service.token is not None,
                "has_inbound_token": service.inbound_token is not None,
            }
        )


class ReplayStarted(BaseModel):
    """A replay that was started and not waited for."""

    dlq_id: int
    workflow_id: str


class ReplayFilter(BaseModel):
    """Which unresolved DLQ rows a bulk replay takes, oldest first."""

    model_config = ConfigDict(extra="forbid")

    service: ServiceName | None = None
    event: FilterText | None = Field(default=None, description="An event name or event id.")
    limit: int = Field(default=1000, ge=1, le=10000)
    wait: bool = False


class LogPage(BaseModel):
    """One page of the delivery log, newest first."""

    items: list[LogEntry]
    next_before: int | None = Field(
        description="Pass as ?before= for the next page; null when this page is the last."
    )


class Health(BaseModel):
    """Whether the API can do its work; /healthz answers 503 unless both are ok."""

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]
    temporal: Literal["ok", "unavailable"]


# shared state and dependencies


@dataclass
class Runtime:
    """The connections the routes share, opened by the lifespan (or handed in by tests)."""

    store: Store
    temporal: Client
    hub: HubClient
    replayer: Replayer
    received: Counter[str] = field(default_factory=Counter)  # events by outcome, for /metrics


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_store(runtime: Annotated[Runtime, Depends(get_runtime)]) -> Store:
    return runtime.store


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
StoreDep = Annotated[Store, Depends(get_store)]

api_bearer = HTTPBearer(auto_error=False, description="The API token (HUB_API_TOKEN).")
inbound_bearer = HTTPBearer(
    scheme_name="InboundBearer", auto_error=False, description="The service's inbound token."
)
inbound_api_key = APIKeyHeader(
    name="X-API-Key",
    scheme_name="InboundApiKey",
    auto_error=False,
    description="The service's inbound token.",
)


def _same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (bytes, so any header text compares without a TypeError)."""
    return compare_digest(given.encode(), expected.encode())


async def require_api_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
) -> None:
    """401 unless the request carries the API token (no check when started without one)."""
    expected: SecretStr | None = request.app.state.api_token
    if expected is None:
        return
    if credentials is None or not _same_secret(
        credentials.credentials, expected.get_secret_value()
    ):
        raise HTTPException(
            401,
            "missing or wrong API token: send Authorization: Bearer <HUB_API_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def sync_index(runtime: Runtime) -> None:
    """Let this process's rule index see a change it just made (the NOTIFY may lag)."""
    await runtime.hub.index.refresh(min_version=await runtime.store.config_version())


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses with a Problem body."""
    return {code: {"model": Problem} for code in codes}


def _invalid_patch(error: ValidationError) -> RequestValidationError:
    """The store re-validates what a PATCH makes of the stored row; its refusal is a 422."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


def _missing_service(error: NotFoundError) -> RequestValidationError:
    """A rule body naming a service that does not exist is invalid input, not a missing URL."""
    return RequestValidationError(
        [{"type": "not_found", "loc": ("body", "service"), "msg": str(error)}]
    )


def _accepted(result: EmitResult, response: Response, runtime: Runtime) -> EmitOut:
    """202 for a started workflow, 200 for a duplicate or no match; counted for /metrics."""
    outcome: EmitOutcome
    if not result.matched:
        outcome, detail = "no_match", "no enabled rule matches this event: nothing started"
    elif result.duplicate:
        outcome, detail = "duplicate", "this event id was already submitted: nothing new started"
    else:
        outcome, detail = "started", "started"
    runtime.received[outcome] += 1
    response.status_code = 202 if outcome == "started" else 200
    return EmitOut(**result.model_dump(exclude={"result"}), detail=detail)


# routes: ingest

events = APIRouter(tags=["ingest"])


@events.post(
    "/events",
    status_code=202,
    response_model=EmitOut,
    responses={
        200: {"model": EmitOut, "description": "Duplicate event id, or no rule matches."},
        **_problems(413, 503),
    },
)
async def post_event(
    event: Annotated[EventIn, Body(openapi_examples=EXAMPLES["event"])],
    response: Response,
    runtime: RuntimeDep,
) -> EmitOut:
    """Submit an event: one workflow delivers it to every matching rule's service."""
    result = await runtime.hub.emit(
        event.name, event.data, event_id=event.id, occurred_at=event.occurred_at
    )
    return _accepted(result, response, runtime)


webhooks = APIRouter(tags=["ingest"])


@webhooks.post(
    "/webhooks/{service}",
    status_code=202,
    response_model=EmitOut,
    responses={
        200: {"model": EmitOut, "description": "No rule matches webhook.{service}."},
        **_problems(400, 401, 403, 404, 413, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_webhook(
    service: Annotated[str, Path(examples=["crm"])],
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(inbound_bearer)],
    api_key: Annotated[str | None, Depends(inbound_api_key)],
) -> EmitOut:
    """Receive a webhook for a service: log it inbound and emit ``webhook.{service}``.

    Authenticated by the service's inbound token, as a bearer token or an X-API-Key header.
    """
    presented = bearer.credentials if bearer is not None else api_key
    if not presented:
        raise HTTPException(
            401,
            "missing credentials: send the service's inbound token as "
            "Authorization: Bearer <token> or X-API-Key: <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    target = await _webhook_service(runtime.store, service)
    if target.inbound_token is None:
        raise HTTPException(
            403, f"service {target.name!r} has no inbound token: it takes no webhooks"
        )
    if not _same_secret(presented, runtime.store.box.open(target.inbound_token)):
        raise HTTPException(403, "wrong inbound token")
    if not target.enabled:
        raise HTTPException(403, f"service {target.name!r} is disabled")

    text, data = _json_object(await request.body())
    event_id, event_name = str(uuid4()), f"webhook.{target.name}"
    entry = LogEntryIn(
        direction=Direction.IN,
        service=target.name,
        method="WEBHOOK",
        target=f"/webhooks/{target.name}",
        status=LogStatus.OK,
        response_excerpt=text[:WEBHOOK_EXCERPT_CHARS] or None,
        event_id=event_id,
        event_name=event_name,
    )
    try:
        result = await runtime.hub.emit(event_name, data, event_id=event_id)
    except Exception as error:
        # The sender will see an error; the log must show the webhook arrived all the same.
        failed = entry.model_copy(
            update={"status": LogStatus.FAILED, "error": f"not emitted: {type(error).__name__}"}
        )
        await runtime.store.add_log(failed)
        raise
    await runtime.store.add_log(entry)
    return _accepted(result, response, runtime)


async def _webhook_service(store: Store, name: str) -> Service:
    """The named service, or 404 (a name that cannot exist is not looked up)."""
    try:
        return await store.get_service(_service_name.validate_python(name))
    except (ValidationError, NotFoundError):
        raise HTTPException(404, f"no service named {name!r}") from None


def _json_object(raw: bytes) -> tuple[str, dict[str, Any]]:
    """The body as text and as a JSON object the hub can carry; 400 otherwise."""
    try:
        text = raw.decode()
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise HTTPException(400, "the body must be a JSON object (UTF-8)") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    try:
        check_json_value(value)
    except ValueError as error:
        raise HTTPException(400, f"the body cannot be carried: {error}") from None
    return text, value


# routes: administration

services = APIRouter(prefix="/services", tags=["services"])


@services.get("", response_model=list[ServiceOut])
async def list_services(store: StoreDep) -> list[ServiceOut]:
    """Every service, by name (credentials only as has_token / has_inbound_token)."""
    return [ServiceOut.of(s) for s in await store.list_services()]


@services.post("", status_code=201, response_model=ServiceOut, responses=_problems(400, 409))
async def create_service(
    spec: Annotated[ServiceIn, Body(openapi_examples=EXAMPLES["service"])], runtime: RuntimeDep
) -> ServiceOut:
    """Add a service; its tokens are stored encrypted (400 if no secret key is configured)."""
    try:
        service = await runtime.store.create_service(spec)
    except SecretKeyError as error:
        raise HTTPException(400, str(error)) from None
    await sync_index(runtime)
    return ServiceOut.of(service)


@services.get("/{name}", response_model=ServiceOut, responses=_problems(404))
async def get_service(name: ServiceNamePath, store: StoreDep) -> ServiceOut:
    """One service (credentials only as has_token / has_inbound_token)."""
    return ServiceOut.of(await store.get_service(name))


@services.patch("/{name}", response_model=ServiceOut, responses=_problems(400, 404))
async def update_service(
    name: ServiceNamePath,
    patch: Annotated[ServicePatch, Body(openapi_examples=EXAMPLES["service_patch"])],
    runtime: RuntimeDep,
) -> ServiceOut:
    """Change the given fields; the resulting service is checked as a whole (422)."""
    try:
        service = await runtime.store.update_service(name, patch)
    except ValidationError as error:
        raise _invalid_patch(error) from None
    except SecretKeyError as error:
        raise HTTPException(400, str(error)) from None
    await sync_index(runtime)
    return ServiceOut.of(service)


@services.delete("/{name}", status_code=204, responses=_problems(404, 409))
async def delete_service(
    name: ServiceNamePath,
    runtime: RuntimeDep,
    with_rules: Annotated[bool, Query(description="Also delete the service's rules.")] = False,
) -> None:
    """Delete a service; 409 while rules use it, unless ``with_rules``."""
    await runtime.store.delete_service(name, with_rules=with_rules)
    await sync_index(runtime)


rules = APIRouter(prefix="/rules", tags=["rules"])


@rules.get("", response_model=list[Rule])
async def list_rules(store: StoreDep, service: ServiceName | None = None) -> list[Rule]:
    """Every rule (or one service's), by id."""
    return await store.list_rules(service=service)


@rules.post("", status_code=201, response_model=Rule)
async def create_rule(
    spec: Annotated[RuleIn, Body(openapi_examples=EXAMPLES["rule"])], runtime: RuntimeDep
) -> Rule:
    """Add a rule; 422 if its service does not exist or its template cannot render JSON."""
    try:
        rule = await runtime.store.create_rule(spec)
    except NotFoundError as error:
        raise _missing_service(error) from None
    await sync_index(runtime)
    return rule


@rules.get("/{rule_id}", response_model=Rule, responses=_problems(404))
async def get_rule(rule_id: RowId, store: StoreDep) -> Rule:
    """One rule."""
    return await store.get_rule(rule_id)


@rules.patch("/{rule_id}", response_model=Rule, responses=_problems(404))
async def update_rule(
    rule_id: RowId,
    patch: Annotated[RulePatch, Body(openapi_examples=EXAMPLES["rule_patch"])],
    runtime: RuntimeDep,
) -> Rule:
    """Change the given fields; the resulting rule is checked as a whole (422)."""
    await runtime.store.get_rule(rule_id)  # 404 for the rule itself
    try:
        rule = await runtime.store.update_rule(rule_id, patch)
    except ValidationError as error:
        raise _invalid_patch(error) from None
    except NotFoundError as error:
        raise _missing_service(error) from None
    await sync_index(runtime)
    return rule


@rules.delete("/{rule_id}", status_code=204, responses=_problems(404))
async def delete_rule(rule_id: RowId, runtime: RuntimeDep) -> None:
    """Delete a rule: events stop matching it at once."""
    await runtime.store.delete_rule(rule_id)
    await sync_index(runtime)


dlq = APIRouter(prefix="/dlq", tags=["dead-letter queue"])


@dlq.get("", response_model=list[DlqEntry])
async def list_dead_letters(
    store: StoreDep,
    service: ServiceName | None = None,
    event: Annotated[FilterText | None, Query(description="An event name or event id.")] = None,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[DlqEntry]:
    """Dead-lettered deliveries, newest first."""
    return await store.list_dead_letters(
        service=service, event=event, include_resolved=include_resolved, limit=limit
    )


@dlq.post(
    "/replay",
    status_code=202,
    response_model=ReplayCounts,
    responses={200: {"model": ReplayCounts, "description": "Waited for every replay."}},
)
async def replay_dead_letters(
    spec: Annotated[ReplayFilter, Body(openapi_examples=EXAMPLES["replay"])],
    response: Response,
    runtime: RuntimeDep,
) -> ReplayCounts:
    """Replay the unresolved rows matching a filter (202), or wait for them all (200)."""
    ids = await runtime.store.dead_letter_ids(
        service=spec.service, event=spec.event, limit=spec.limit
    )
    counts = await runtime.replayer.replay_many(
        ids, wait=spec.wait, concurrency=DEFAULT_CONCURRENCY
    )
    response.status_code = 200 if spec.wait else 202
    return counts


@dlq.get("/{dlq_id}", response_model=DlqEntry, responses=_problems(404))
async def get_dead_letter(dlq_id: RowId, store: StoreDep) -> DlqEntry:
    """One DLQ row with its stored payload, last error and replay count."""
    return await store.get_dead_letter(dlq_id)


@dlq.post(
    "/{dlq_id}/replay",
    status_code=202,
    response_model=ReplayStarted | ReplayOutcome,
    responses={
        200: {"model": ReplayOutcome, "description": "Waited: how the replay ended."},
        **_problems(404, 409),
    },
)
async def replay_dead_letter(
    dlq_id: RowId,
    response: Response,
    runtime: RuntimeDep,
    wait: Annotated[bool, Query(description="Wait until the replay ends.")] = False,
) -> ReplayStarted | ReplayOutcome:
    """Send the row's stored payload again; the row is resolved only if that delivers."""
    handle = await runtime.replayer.start(dlq_id)
    if not wait:
        return ReplayStarted(dlq_id=dlq_id, workflow_id=handle.id)
    outcome = await handle.result()
    response.status_code = 200
    return outcome


@dlq.delete("/{dlq_id}", status_code=204, responses=_problems(404))
async def delete_dead_letter(dlq_id: RowId, store: StoreDep) -> None:
    """Drop a DLQ row (resolved or not) without replaying it."""
    await store.delete_dead_letter(dlq_id)


logs = APIRouter(tags=["delivery log"])


@logs.get("/logs", response_model=LogPage)
async def list_logs(
    store: StoreDep,
    service: ServiceName | None = None,
    status: LogStatus | None = None,
    direction: Direction | None = None,
    event: Annotated[EventId | None, Query(description="An event id.")] = None,
    since: UtcDatetime | None = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A row id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LogPage:
    """Delivery-log rows, newest first, one page at a time (keyset pagination by id)."""
    items = await store.list_logs(
        service=service,
        status=status.value if status else None,
        direction=direction.value if direction else None,
        event_id=event,
        since=since,
        before_id=before,
        limit=limit,
    )
    return LogPage(items=items, next_before=items[-1].id if len(items) == limit else None)


circuits = APIRouter(prefix="/circuits", tags=["circuits"])


@circuits.get("", response_model=list[Circuit])
async def list_circuits(store: StoreDep) -> list[Circuit]:
    """Every service's circuit: state, consecutive failures, seconds until a probe."""
    return await store.list_circuits()


@circuits.post("/{service}/reset", response_model=Circuit, responses=_problems(404))
async def reset_circuit(service: ServiceNamePath, store: StoreDep) -> Circuit:
    """Close a service's circuit by hand (failures back to 0)."""
    await store.reset_circuits(service)
    for circuit in await store.list_circuits():
        if circuit.service == service:
            return circuit
    raise NotFoundError(f"no service named {service!r}")  # deleted meanwhile


# routes: health and metrics (no auth: probes and scrapers carry no token)

health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(runtime: RuntimeDep, response: Response) -> Health:
    """Whether PostgreSQL and Temporal answer (503 naming the one that does not)."""
    database, temporal = await asyncio.gather(
        _answers("database", runtime.store.ping),
        _answers(
            "temporal",
            lambda: runtime.temporal.service_client.check_health(timeout=HEALTH_TIMEOUT),
        ),
    )
    ok = database and temporal
    response.status_code = 200 if ok else 503
    return Health(
        status="ok" if ok else "unavailable",
        database="ok" if database else "unavailable",
        temporal="ok" if temporal else "unavailable",
    )


async def _answers(name: str, check: Callable[[], Awaitable[object]]) -> bool:
    """Whether a check completes in time without error (and does not answer False)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT.total_seconds()):
            answer = await check()
    except Exception as error:
        log.warning("health check: %s unavailable (%s)", name, type(error).__name__)
        return False
    return answer is not False


@health.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(runtime: RuntimeDep) -> PlainTextResponse:
    """Prometheus text exposition: ingest counters, delivery log, DLQ and circuits."""
    data = await runtime.store.metrics([*LATENCY_BUCKETS_MS, math.inf])
    return PlainTextResponse(
        render_metrics(data, runtime.received), media_type=PROMETHEUS_CONTENT_TYPE
    )


def render_metrics(data: StoreMetrics, received: Mapping[str, int]) -> str:
    """The metrics in Prometheus text format 0.0.4."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])

    def sample(name: str, labels: Mapping[str, str], value: float) -> None:
        text = ",".join(f'{key}="{_label_value(v)}"' for key, v in labels.items())
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")

    family(
        "hub_events_received_total",
        "counter",
        "Events accepted by POST /events and webhooks since this API process started.",
    )
    for outcome in EMIT_OUTCOMES:
        sample("hub_events_received_total", {"outcome": outcome}, received.get(outcome, 0))

    family("hub_delivery_attempts", "gauge", "Attempts in the retained delivery log.")
    for row in sorted(data.attempts, key=lambda r: (r["service"], r["direction"], r["status"])):
        labels = {"service": row["service"], "direction": row["direction"], "status": row["status"]}
        sample("hub_delivery_attempts", labels, row["n"])

    family(
        "hub_delivery_latency_ms",
        "histogram",
        "Latency of outbound attempts in the retained delivery log, in milliseconds.",
    )
    sums: Counter[str] = Counter()
    for row in data.attempts:
        if row["direction"] == Direction.OUT.value:
            sums[row["service"]] += float(row["latency_sum"])
    counts: dict[str, int] = {}
    for row in data.latency_buckets:  # ordered by service, le; the last le is +Inf
        le = float(row["le"])
        sample(
            "hub_delivery_latency_ms_bucket",
            {"service": row["service"], "le": _number(le)},
            row["n"],
        )
        if math.isinf(le):
            counts[row["service"]] = row["n"]
    for service, count in counts.items():
        sample("hub_delivery_latency_ms_sum", {"service": service}, sums[service])
        sample("hub_delivery_latency_ms_count", {"service": service}, count)

    family(
        "hub_deliveries",
        "gauge",
        "Deliveries by outcome: delivered = successful outbound attempts in the retained log, "
        "dead_lettered = rows in the dead-letter queue.",
    )
    delivered = {
        row["service"]: row["n"]
        for row in data.attempts
        if row["direction"] == Direction.OUT.value and row["status"] == "ok"
    }
    for service in sorted(delivered.keys() | data.dead_lettered.keys()):
        sample(
            "hub_deliveries",
            {"service": service, "outcome": "delivered"},
            delivered.get(service, 0),
        )
        sample(
            "hub_deliveries",
            {"service": service, "outcome": "dead_lettered"},
            data.dead_lettered.get(service, 0),
        )

    family("hub_dlq_depth", "gauge", "Unresolved dead-letter rows.")
    for service, depth in sorted(data.dlq_depth.items()):
        sample("hub_dlq_depth", {"service": service}, depth)

    family("hub_circuit_state", "gauge", "1 for the circuit's current state, 0 for the others.")
    for circuit in data.circuits:
        for state in CircuitState:
            labels = {"service": circuit.service, "state": state.value}
            sample("hub_circuit_state", labels, 1 if circuit.state is state else 0)
    family("hub_circuit_failures", "gauge", "Consecutive failures the circuit has counted.")
    for circuit in data.circuits:
        sample("hub_circuit_failures", {"service": circuit.service}, circuit.failures)
    return "\n".join(lines) + "\n"


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# errors: one JSON shape, no tracebacks, no input echoed back (it may hold a token)


async def _request_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 shape, less each error's input and context (they may hold a token)."""
    errors = [{"type": e["type"], "loc": e["loc"], "msg": e["msg"]} for e in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, 422)


def _problem(
    status: int, detail: str | None = None, *, prefix: str = ""
) -> Callable[..., Awaitable[JSONResponse]]:
    """A handler answering ``status`` with the error's own message (or a fixed one)."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        if status >= 500:
            log.error(
                "%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error
            )
        return JSONResponse({"detail": detail or prefix + str(error)}, status)

    return handle


async def _internal(request: Request, error: Exception) -> JSONResponse:
    """A bug: the client learns nothing; Starlette re-raises it for the server to log."""
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(error).__name__)
    return JSONResponse({"detail": "internal error"}, 500)


async def _temporal_failed(request: Request, error: RPCError) -> JSONResponse:
    detail = f"Temporal: {error.message}"
    log.error("%s %s: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, 503)


EXCEPTION_HANDLERS: dict[type[Exception], Callable[..., Awaitable[JSONResponse]]] = {
    RequestValidationError: _request_invalid,
    NotFoundError: _problem(404),
    ConflictError: _problem(409),
    StoreError: _problem(400),
    SecretKeyError: _problem(503),
    # Class 22 (data exception): a value the checks let through but PostgreSQL refuses.
    asyncpg.DataError: _problem(400, prefix="the database refused a value: "),
    asyncpg.IntegrityConstraintViolationError: _problem(409, prefix="the database refused: "),
    # Classes 08, 40, 53 and 57: the database is down, busy or restarting; worth a retry.
    asyncpg.PostgresConnectionError: _problem(503, "the database is unavailable"),
    asyncpg.TransactionRollbackError: _problem(503, "the database is busy: retry"),
    asyncpg.InsufficientResourcesError: _problem(503, "the database is busy: retry"),
    asyncpg.OperatorInterventionError: _problem(503, "the database is unavailable"),
    asyncpg.InterfaceError: _problem(503, "the database is unavailable"),
    OSError: _problem(503, "a server the hub needs is unreachable"),
    RPCError: _temporal_failed,
    Exception: _internal,
}


# the body size limit


class BodySizeLimit:
    """413 for a request body over ``max_bytes``: by its Content-Length, and as it streams in.

    The header is checked first so a large upload is refused unread; the count of bytes
    actually received catches bodies that lie about, or omit, their length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await JSONResponse({"detail": "invalid Content-Length"}, 400)(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body too large: the limit is {self.max_bytes} bytes"

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": self._message()}, 413)


# the application


def create_app(
    settings: Settings,
    *,
    insecure_no_auth: bool = False,
    store: Store | None = None,
    temporal: Client | None = None,
) -> FastAPI:
    """The API application. ``store`` and ``temporal`` are used as given (and not closed).

    With a token in ``settings.api_token``, every route but /healthz and /metrics needs it;
    without one the app is built only when ``insecure_no_auth`` says so.
    """
    token = (
        settings.api_token if settings.api_token and settings.api_token.get_secret_value() else None
    )
    if token is None and not insecure_no_auth:
        raise RuntimeError("HUB_API_TOKEN is not set: set it, or start with --insecure-no-auth")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            own_store = store
            if own_store is None:
                dsn = await asyncio.to_thread(database_url, settings)
                box = SecretBox.from_settings(settings)
                own_store = await stack.enter_async_context(Store.open(dsn, box=box))
            client = temporal or await connect_temporal(settings)
            hub = await stack.enter_async_context(
                HubClient.connect(settings, temporal=client, store=own_store)
            )
            replayer = Replayer(client, own_store, settings.task_queue)
            app.state.runtime = Runtime(own_store, client, hub, replayer)
            yield

    app = FastAPI(
        title="temporal-hub",
        version=__version__,
        description=(
            "Events in, durable deliveries out. Authenticate with "
            "`Authorization: Bearer <HUB_API_TOKEN>`; webhooks use the service's inbound token."
        ),
        lifespan=lifespan,
    )
    app.state.api_token = token
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    for error_type, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    protected = [Depends(require_api_token)]
    for router in (events, services, rules, dlq, logs, circuits):
        app.include_router(router, dependencies=protected, responses=_problems(401))
    app.include_router(webhooks)
    app.include_router(health)
    return app


def serve(settings: Settings, *, host: str, port: int, insecure_no_auth: bool = False) -> None:
    """Run the API with uvicorn until interrupted (raises before listening if unsafe)."""
    app = create_app(settings, insecure_no_auth=insecure_no_auth)
    if app.state.api_token is None:
        log.warning("the API runs WITHOUT authentication (--insecure-no-auth)")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
