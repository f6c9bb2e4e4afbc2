"""The ``hub`` command line."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import uuid4

import asyncpg
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

from hub import templating
from hub.client import HubClient, connect_temporal
from hub.config import Settings
from hub.devstack import DevStackError, database_url
from hub.dlq import Replayer
from hub.models import (
    AuthType,
    ConsumeInput,
    Event,
    HttpMethod,
    ReplayOutcome,
    RuleIn,
    RulePatch,
    ServiceIn,
    ServicePatch,
    ServiceType,
    mask_url,
)
from hub.process import exit_now
from hub.secrets import SecretBox, SecretKeyError
from hub.store import Store, StoreError, migrate

app = typer.Typer(
    help="Temporal integration hub: deliver events to HTTP APIs and AMQP brokers, durably.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
service_app = typer.Typer(help="External services (HTTP APIs, AMQP brokers).", no_args_is_help=True)
rule_app = typer.Typer(
    help="Rules: which events go to which service, and how.", no_args_is_help=True
)
dlq_app = typer.Typer(
    help="The dead-letter queue: deliveries that failed for good.", no_args_is_help=True
)
template_app = typer.Typer(help="Payload templates.", no_args_is_help=True)
circuit_app = typer.Typer(help="Circuit breakers, one per service.", no_args_is_help=True)
responses_app = typer.Typer(help="AMQP response queues.", no_args_is_help=True)
app.add_typer(service_app, name="service", rich_help_panel="Configure")
app.add_typer(rule_app, name="rule", rich_help_panel="Configure")
app.add_typer(dlq_app, name="dlq", rich_help_panel="Operate")
app.add_typer(template_app, name="template", rich_help_panel="Configure")
app.add_typer(circuit_app, name="circuit", rich_help_panel="Operate")
app.add_typer(responses_app, name="responses", rich_help_panel="Operate")

out = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
T = TypeVar("T")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class UsageError(Exception):
    """Bad input that the command itself detected."""


def one_line(error: BaseException) -> str:
    """A short, secret-free description of an error for the operator."""
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    if isinstance(error, RPCError):
        return f"Temporal: {error.message}"
    if isinstance(error, OSError | asyncpg.PostgresError):
        return f"cannot reach a server: {error}"
    return str(error)


def command(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command; turn expected failures into one line and exit code 1."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return asyncio.run(func(*args, **kwargs))
        except (
            UsageError,
            StoreError,
            ValidationError,
            templating.TemplateError,
            DevStackError,
            SecretKeyError,
            RPCError,
            OSError,
            asyncpg.PostgresError,
        ) as error:
            err_console.print(f"[red]error:[/red] {one_line(error)}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [item.model_dump(mode="json") for item in value]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


def print_fields(values: dict[str, Any]) -> None:
    width = max(len(k) for k in values)
    for key, value in values.items():
        shown = "" if value is None else value
        out.print(f"[bold]{key.ljust(width)}[/bold]  {shown}", highlight=False, soft_wrap=True)


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{what} is not valid JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a JSON object")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (or plain seconds) as a timedelta."""
    value, unit = text[:-1], text[-1:]
    if unit.isdigit():
        value, unit = text, "s"
    if unit not in _UNITS or not value.isdigit():
        raise UsageError(f"invalid duration {text!r}: use a number and s, m, h, d or w")
    return timedelta(seconds=int(value) * _UNITS[unit])


def read_template(value: str) -> str:
    """A template given inline, or as @path to a file."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text()
        except OSError as error:
            raise UsageError(f"cannot read template file {path}: {error.strerror}") from None
    return value


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[T]]) -> T:
    """Run one store action on a short-lived pool."""
    box = SecretBox.from_settings(settings)
    async with Store.open(database_url(settings), box=box, max_size=2) as store:
        return await action(store)


# top level


@app.command("migrate", rich_help_panel="Run")
@command
async def migrate_command() -> None:
    """Apply pending database migrations (safe to run from several processes)."""
    applied = await migrate(database_url(Settings()))
    out.print(f"applied {', '.join(applied)}" if applied else "database is up to date")


@app.command("worker", rich_help_panel="Run")
def worker_command() -> None:
    """Run a worker: executes dispatch workflows and delivery activities."""
    from hub.worker import main

    main()


@app.command("dev", rich_help_panel="Run")
def dev_command(
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    api_port: Annotated[int, typer.Option(help="HTTP API port.")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="Add a demo sink, service and rules; emit events.")
    ] = False,
    demo_port: Annotated[int, typer.Option(help="Port of the demo sink.")] = 8099,
) -> None:
    """Run the whole hub here: embedded Temporal (+UI) and PostgreSQL, worker, API, schedule.

    Servers named by HUB_TEMPORAL_ADDRESS / HUB_DATABASE_URL are used instead of embedded
    ones. Everything persists under HUB_DATA_DIR (default ./.hub), including the generated
    API token and secret key.
    """
    from hub.devstack import DevPorts, run_dev
    from hub.worker import configure_logging

    configure_logging()
    ports = DevPorts(temporal=temporal_port, ui=ui_port, api=api_port, demo=demo_port)
    try:
        run_dev(Settings(), ports, demo=demo, say=lambda line: out.print(line, highlight=False))
    except (DevStackError, SecretKeyError, OSError, asyncpg.PostgresError, RPCError) as error:
        err_console.print(f"[red]error:[/red] {one_line(error)}", highlight=False)
        raise typer.Exit(1) from None


@app.command("api", rich_help_panel="Run")
def api_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Serve without HUB_API_TOKEN (dev only).")
    ] = False,
) -> None:
    """Serve the HTTP API (ingest, webhooks, admin; OpenAPI at /openapi.json)."""
    from hub.api import serve
    from hub.worker import configure_logging

    configure_logging()
    try:
        serve(Settings(), host=host, port=port, insecure_no_auth=insecure_no_auth)
    except (RuntimeError, OSError, asyncpg.PostgresError, RPCError) as error:
        err_console.print(f"[red]error:[/red] {one_line(error)}", highlight=False)
        raise typer.Exit(1) from None


@app.command("emit", rich_help_panel="Events")
@command
async def emit_command(
    name: Annotated[str, typer.Argument(help="Event name, e.g. order.created.")],
    data: Annotated[str, typer.Option(help="Event data as a JSON object.")] = "{}",
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (default: new UUID).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every delivery has ended.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Emit an event: one workflow delivers it to every matching rule's service."""
    payload = parse_json_object(data, "--data")
    async with HubClient.connect() as hub:
        result = await hub.emit(name, payload, event_id=event_id, wait=wait)
    if as_json:
        print_json(result)
        return
    if not result.matched:
        out.print(f"event {result.event_id}: no enabled rule matches {name!r}; nothing started")
        return
    state = "duplicate: already submitted, nothing new started" if result.duplicate else "started"
    out.print(f"event {result.event_id}: {state} (workflow {result.workflow_id})")
    if result.result is not None:
        out.print(f"outcome: {result.result.outcome.value}")
        for d in result.result.deliveries:
            line = (
                f"  {d.service} (rule {d.rule_id}): {d.status.value} after {d.attempts} attempt(s)"
            )
            if d.error:
                line += f": {d.error}"
            out.print(line, highlight=False)
    if result.result is not None and result.result.outcome.value != "delivered":
        raise typer.Exit(2)


@app.command("logs", rich_help_panel="Events")
@command
async def logs_command(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    status: Annotated[str | None, typer.Option(help="ok or failed.")] = None,
    direction: Annotated[str | None, typer.Option(help="in or out.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event id.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only rows at or after this time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The delivery log, newest first: one row per attempt."""
    if status not in (None, "ok", "failed"):
        raise UsageError("--status must be ok or failed")
    if direction not in (None, "in", "out"):
        raise UsageError("--direction must be in or out")
    rows = await _with_store(
        Settings(),
        lambda s: s.list_logs(
            service=service,
            status=status,
            direction=direction,
            event_id=event,
            since=since,
            limit=limit,
        ),
    )
    if as_json:
        print_json(rows)
        return
    print_table(
        "Delivery log (newest first; --json for every field)",
        ["id", "time", "dir", "service", "event", "try", "result", "ms", "error / response"],
        [
            (
                r.id,
                r.created_at.strftime("%m-%d %H:%M:%S"),
                r.direction.value,
                r.service,
                r.event_name or r.event_id,
                r.attempt,
                f"{r.status.value} {r.status_code or ''}".strip(),
                round(r.latency_ms) if r.latency_ms is not None else None,
                r.error or r.response_excerpt,
            )
            for r in rows
        ],
    )


# services


AuthTypeOption = Annotated[AuthType | None, typer.Option("--auth-type")]
TokenOption = Annotated[
    str | None, typer.Option(help="Bearer token or API key (stored encrypted).")
]
InboundTokenOption = Annotated[
    str | None, typer.Option(help="Token that POST /webhooks/NAME must present.")
]
TimeoutOption = Annotated[float | None, typer.Option("--timeout", help="Seconds per attempt.")]
AttemptsOption = Annotated[int | None, typer.Option(help="Attempts per delivery, 1..5.")]
BackoffOption = Annotated[
    float | None, typer.Option(help="Seconds before the first retry; doubles.")
]
ThresholdOption = Annotated[
    int | None, typer.Option(help="Failures in a row that open the circuit.")
]
CooldownOption = Annotated[float | None, typer.Option(help="Seconds an open circuit waits.")]
QueueOption = Annotated[str | None, typer.Option(help="AMQP queue replies arrive on.")]


def given(**options: object) -> dict[str, object]:
    """The options the user actually gave (Typer passes None for the others)."""
    return {key: value for key, value in options.items() if value is not None}


@service_app.command("add")
@command
async def service_add(
    name: Annotated[str, typer.Argument(help="Unique name: lowercase letters, digits, _ . -")],
    url: Annotated[str, typer.Option("--url", help="Base URL (http/https, or amqp/amqps).")],
    service_type: Annotated[ServiceType, typer.Option("--type")] = ServiceType.HTTP,
    auth_type: AuthTypeOption = None,
    token: TokenOption = None,
    inbound_token: InboundTokenOption = None,
    timeout_s: TimeoutOption = None,
    max_attempts: AttemptsOption = None,
    backoff: BackoffOption = None,
    cb_threshold: ThresholdOption = None,
    cb_cooldown: CooldownOption = None,
    response_queue: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a service that rules can deliver to (defaults: timeout 5, 5 attempts, backoff 1)."""
    spec = ServiceIn.model_validate(
        given(
            name=name,
            type=service_type,
            base_url=url,
            auth_type=auth_type,
            token=token,
            inbound_token=inbound_token,
            timeout=timeout_s,
            max_attempts=max_attempts,
            backoff=backoff,
            cb_threshold=cb_threshold,
            cb_cooldown=cb_cooldown,
            response_queue=response_queue,
        )
    )
    service = await _with_store(Settings(), lambda s: s.create_service(spec))
    if as_json:
        print_json(service)
    else:
        out.print(f"added service {service.name} (id {service.id})")


@service_app.command("update")
@command
async def service_update(
    name: str,
    url: Annotated[str | None, typer.Option("--url", help="New base URL.")] = None,
    auth_type: AuthTypeOption = None,
    token: TokenOption = None,
    inbound_token: InboundTokenOption = None,
    timeout_s: TimeoutOption = None,
    max_attempts: AttemptsOption = None,
    backoff: BackoffOption = None,
    cb_threshold: ThresholdOption = None,
    cb_cooldown: CooldownOption = None,
    response_queue: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a service's settings; only the options given change."""
    patch = ServicePatch.model_validate(
        given(
            base_url=url,
            auth_type=auth_type,
            token=token,
            inbound_token=inbound_token,
            timeout=timeout_s,
            max_attempts=max_attempts,
            backoff=backoff,
            cb_threshold=cb_threshold,
            cb_cooldown=cb_cooldown,
            response_queue=response_queue,
        )
    )
    await _update_service(name, patch, as_json)


@service_app.command("enable")
@command
async def service_enable(name: str) -> None:
    """Let rules deliver to this service again."""
    await _update_service(name, ServicePatch(enabled=True), as_json=False)


@service_app.command("disable")
@command
async def service_disable(name: str) -> None:
    """Stop matching this service's rules (deliveries in flight go to the DLQ)."""
    await _update_service(name, ServicePatch(enabled=False), as_json=False)


async def _update_service(name: str, patch: ServicePatch, as_json: bool) -> None:
    service = await _with_store(Settings(), lambda s: s.update_service(name, patch))
    if as_json:
        print_json(service)
    else:
        state = "enabled" if service.enabled else "disabled"
        out.print(f"updated service {service.name} ({state})")


@service_app.command("list")
@command
async def service_list(as_json: JsonOption = False) -> None:
    """List services."""
    services = await _with_store(Settings(), lambda s: s.list_services())
    if as_json:
        print_json(services)
        return
    print_table(
        "Services",
        ["name", "type", "url", "auth", "timeout", "attempts", "backoff", "enabled"],
        [
            (
                s.name,
                s.type.value,
                mask_url(s.base_url),
                s.auth_type.value,
                s.timeout,
                s.max_attempts,
                s.backoff,
                "yes" if s.enabled else "no",
            )
            for s in services
        ],
    )


@service_app.command("show")
@command
async def service_show(name: str, as_json: JsonOption = False) -> None:
    """Show one service (its token masked)."""
    service = await _with_store(Settings(), lambda s: s.get_service(name))
    if as_json:
        print_json(service)
        return
    values = service.model_dump(mode="json")
    values["base_url"] = mask_url(service.base_url)
    values["token"] = "(set)" if service.token else "(none)"
    print_fields(values)


@service_app.command("delete")
@command
async def service_delete(
    name: str,
    with_rules: Annotated[
        bool, typer.Option("--with-rules", help="Also delete the service's rules.")
    ] = False,
) -> None:
    """Delete a service (refused while rules use it, unless --with-rules)."""
    removed = await _with_store(Settings(), lambda s: s.delete_service(name, with_rules=with_rules))
    suffix = f" and {removed} rule(s)" if removed else ""
    out.print(f"deleted service {name}{suffix}")


# rules


@rule_app.command("add")
@command
async def rule_add(
    event: Annotated[str, typer.Option(help="Event name or pattern with * (order.*).")],
    service: Annotated[str, typer.Option(help="Service name.")],
    method: Annotated[HttpMethod, typer.Option(case_sensitive=False)] = HttpMethod.POST,
    endpoint: Annotated[str, typer.Option(help="Path appended to the service URL.")] = "",
    template: Annotated[str, typer.Option(help="Payload template, or @file.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a rule: events matching --event go to --service."""
    spec = RuleIn(
        event=event,
        service=service,
        method=method,
        endpoint=endpoint,
        template=read_template(template),
        enabled=not disabled,
    )
    rule = await _with_store(Settings(), lambda s: s.create_rule(spec))
    if as_json:
        print_json(rule)
    else:
        out.print(
            f"added rule {rule.id}: {rule.event} -> {rule.service} {rule.method.value} "
            f"{rule.endpoint or '/'}",
            highlight=False,
        )


@rule_app.command("list")
@command
async def rule_list(
    service: Annotated[str | None, typer.Option(help="Only this service's rules.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List rules."""
    rules = await _with_store(Settings(), lambda s: s.list_rules(service=service))
    if as_json:
        print_json(rules)
        return
    print_table(
        "Rules",
        ["id", "event", "service", "method", "endpoint", "template", "enabled"],
        [
            (
                r.id,
                r.event,
                r.service,
                r.method.value,
                r.endpoint,
                (r.template[:40] + "…") if len(r.template) > 40 else r.template or "(whole event)",
                "yes" if r.enabled else "no",
            )
            for r in rules
        ],
    )


@rule_app.command("show")
@command
async def rule_show(rule_id: int, as_json: JsonOption = False) -> None:
    """Show one rule."""
    rule = await _with_store(Settings(), lambda s: s.get_rule(rule_id))
    if as_json:
        print_json(rule)
    else:
        print_fields(rule.model_dump(mode="json"))


@rule_app.command("update")
@command
async def rule_update(
    rule_id: int,
    event: Annotated[str | None, typer.Option(help="Event name or pattern.")] = None,
    service: Annotated[str | None, typer.Option(help="Service name.")] = None,
    method: Annotated[HttpMethod | None, typer.Option(case_sensitive=False)] = None,
    endpoint: Annotated[str | None, typer.Option(help="Path appended to the URL.")] = None,
    template: Annotated[str | None, typer.Option(help="Payload template, or @file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a rule; only the options given change."""
    patch = RulePatch.model_validate(
        given(
            event=event,
            service=service,
            method=method,
            endpoint=endpoint,
            template=read_template(template) if template is not None else None,
        )
    )
    await _update_rule(rule_id, patch, as_json)


@rule_app.command("enable")
@command
async def rule_enable(rule_id: int) -> None:
    """Let this rule match again."""
    await _update_rule(rule_id, RulePatch(enabled=True), as_json=False)


@rule_app.command("disable")
@command
async def rule_disable(rule_id: int) -> None:
    """Stop this rule from matching."""
    await _update_rule(rule_id, RulePatch(enabled=False), as_json=False)


async def _update_rule(rule_id: int, patch: RulePatch, as_json: bool) -> None:
    rule = await _with_store(Settings(), lambda s: s.update_rule(rule_id, patch))
    if as_json:
        print_json(rule)
    else:
        state = "enabled" if rule.enabled else "disabled"
        out.print(f"updated rule {rule.id}: {rule.event} -> {rule.service} ({state})")


@rule_app.command("delete")
@command
async def rule_delete(rule_id: int) -> None:
    """Delete a rule."""
    await _with_store(Settings(), lambda s: s.delete_rule(rule_id))
    out.print(f"deleted rule {rule_id}")


# templates


@template_app.command("preview")
@command
async def template_preview(
    template: Annotated[str, typer.Option(help="Template, or @file.")],
    data: Annotated[str, typer.Option(help="Event data as a JSON object.")] = "{}",
    name: Annotated[str, typer.Option(help="Event name.")] = "preview",
) -> None:
    """Render a template against sample data, as a delivery would."""
    event = Event(id="preview", name=name, data=parse_json_object(data, "--data"))
    sys.stdout.write(templating.render(read_template(template), event) + "\n")


# dead-letter queue


@dlq_app.command("list")
@command
async def dlq_list(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event name or id.")] = None,
    resolved: Annotated[bool, typer.Option("--all", help="Include resolved rows.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List dead-lettered deliveries, newest first."""
    rows = await _with_store(
        Settings(),
        lambda s: s.list_dead_letters(
            service=service, event=event, include_resolved=resolved, limit=limit
        ),
    )
    if as_json:
        print_json(rows)
        return
    print_table(
        "Dead-letter queue",
        ["id", "time", "event", "event id", "service", "rule", "attempts", "error"],
        [
            (
                r.id,
                r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                r.event_name,
                r.event_id,
                r.service,
                r.rule_id,
                r.attempts,
                r.error,
            )
            for r in rows
        ],
    )


@dlq_app.command("show")
@command
async def dlq_show(dlq_id: int, as_json: JsonOption = False) -> None:
    """Show one DLQ row with its rendered payload and last error."""
    entry = await _with_store(Settings(), lambda s: s.get_dead_letter(dlq_id))
    if as_json:
        print_json(entry)
    else:
        values = entry.model_dump(mode="json")
        values["event"] = json.dumps(values["event"])
        print_fields(values)


@dlq_app.command("replay")
@command
async def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="DLQ ids to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every unresolved row (filtered).")] = False,
    service: Annotated[str | None, typer.Option(help="With --all: only this service.")] = None,
    event: Annotated[str | None, typer.Option(help="With --all: this event name or id.")] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Start the replays, do not wait for them.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Replays in flight.")] = 16,
    as_json: JsonOption = False,
) -> None:
    """Send dead-lettered deliveries again, exactly as stored; a row resolves when delivered."""
    if bool(ids) == all_:
        raise UsageError("give DLQ ids, or --all (optionally with --service / --event)")
    if (service or event) and not all_:
        raise UsageError("--service and --event filter --all")
    settings = Settings()
    temporal = await connect_temporal(settings)
    box = SecretBox.from_settings(settings)
    async with Store.open(database_url(settings), box=box, max_size=4) as store:
        targets = ids or await store.dead_letter_ids(service=service, event=event)

        def progress(dlq_id: int, outcome: ReplayOutcome | None) -> None:
            if as_json:
                return
            if outcome is None:
                state = "started" if no_wait else "skipped (resolved or gone)"
            elif outcome.delivered:
                state = f"delivered after {outcome.attempts} attempt(s)"
            else:
                state = f"failed again: {outcome.error}"
            err_console.print(f"dlq {dlq_id}: {state}", highlight=False)

        replayer = Replayer(temporal, store, settings.task_queue)
        counts = await replayer.replay_many(
            targets, wait=not no_wait, concurrency=concurrency, progress=progress
        )
    if as_json:
        print_json(counts)
    else:
        out.print(
            f"replayed {counts.requested}: {counts.started} started, {counts.delivered} "
            f"delivered, {counts.failed} failed, {counts.skipped} skipped"
        )
    if counts.failed:
        raise typer.Exit(2)


@dlq_app.command("delete")
@command
async def dlq_delete(dlq_ids: Annotated[list[int], typer.Argument(help="DLQ ids.")]) -> None:
    """Delete DLQ rows (the delivery log keeps their attempts)."""

    async def delete(store: Store) -> None:
        for dlq_id in dlq_ids:
            await store.delete_dead_letter(dlq_id)

    await _with_store(Settings(), delete)
    out.print(f"deleted {len(dlq_ids)} DLQ row(s)")


@dlq_app.command("flush")
@command
async def dlq_flush(
    older_than: Annotated[
        str, typer.Option(help="Age, e.g. 30m, 12h, 7d, 2w: rows created before that go.")
    ] = "7d",
) -> None:
    """Delete DLQ rows older than an age, resolved or not."""
    cutoff = datetime.now(UTC) - parse_duration(older_than)
    removed = await _with_store(Settings(), lambda s: s.flush_dead_letters(cutoff))
    out.print(f"flushed {removed} DLQ row(s) created before {cutoff:%Y-%m-%d %H:%M:%S} UTC")


# circuit breakers


@circuit_app.command("list")
@command
async def circuit_list(as_json: JsonOption = False) -> None:
    """Every service's circuit: state, consecutive failures, seconds until a probe."""
    circuits = await _with_store(Settings(), lambda s: s.list_circuits())
    if as_json:
        print_json(circuits)
        return
    print_table(
        "Circuits",
        ["service", "state", "failures", "threshold", "opened at", "retry in (s)"],
        [
            (
                c.service,
                c.state.value,
                c.failures,
                c.threshold,
                c.opened_at.strftime("%Y-%m-%d %H:%M:%S") if c.opened_at else None,
                f"{c.retry_in:.1f}" if c.retry_in else None,
            )
            for c in circuits
        ],
    )


@circuit_app.command("reset")
@command
async def circuit_reset(
    name: Annotated[str | None, typer.Argument(help="Service whose circuit to close.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Close every circuit.")] = False,
) -> None:
    """Close a circuit by hand (failures back to 0)."""
    if (name is None) == (not all_):
        raise UsageError("name one service, or give --all")
    count = await _with_store(Settings(), lambda s: s.reset_circuits(None if all_ else name))
    out.print(f"reset {count} circuit(s)")


# response queues


@responses_app.command("consume")
@command
async def responses_consume(
    max_messages: Annotated[int, typer.Option(min=1, help="At most this many per queue.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Drain every AMQP response queue once now (the schedule does it every minute)."""
    from workflows.consume import SCHEDULE_ID, ConsumeResponsesWorkflow

    settings = Settings()
    temporal = await connect_temporal(settings)
    summary = await temporal.execute_workflow(
        ConsumeResponsesWorkflow.run,
        ConsumeInput(max_messages=max_messages),
        id=f"{SCHEDULE_ID}-manual-{uuid4().hex[:12]}",
        task_queue=settings.task_queue,
    )
    if as_json:
        print_json(summary)
        return
    print_table(
        "Response queues",
        ["service", "queue", "consumed", "rejected to .dlq", "error"],
        [(r.service, r.queue, r.consumed, r.rejected, r.error) for r in summary.results],
    )


def main() -> None:
    """The ``hub`` console script."""
    try:
        app()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    exit_now(code)
