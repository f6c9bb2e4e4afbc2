"""``hub emit`` and ``hub logs``: send an event, and read what its deliveries did."""

from datetime import datetime
from typing import Annotated
from uuid import uuid4

import typer

from hub.cli.context import cli_state
from hub.cli.errors import UsageError
from hub.cli.output import JsonOption, out, print_json, print_table
from hub.cli.parsing import parse_json_object
from hub.cli.views import TableView
from hub.core.limits import check_event_size
from hub.core.models import EmitResult, Event, LogEntry, LogStatus
from hub.engine.client import HubClient

_LOG_TABLE: TableView[LogEntry] = TableView(
    "Delivery log (newest first; --json for every field)",
    ["id", "time", "dir", "service", "event", "try", "result", "ms", "error / response"],
    lambda r: (
        r.id,
        r.created_at.strftime("%m-%d %H:%M:%S"),
        r.direction.value,
        r.service,
        r.event_name or r.event_id,
        r.attempt,
        f"{r.status.value} {r.status_code or ''}".strip(),
        round(r.latency_ms) if r.latency_ms is not None else None,
        r.error or r.response_excerpt,
    ),
)


async def emit_command(
    ctx: typer.Context,
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
    settings = cli_state(ctx).settings
    # Built and measured here, so an invalid or oversized event is refused before connecting.
    event = Event(id=event_id or str(uuid4()), name=name, data=payload)
    check_event_size(event, settings.max_event_bytes)
    async with HubClient.connect(settings) as hub:
        result = await hub.emit(
            event.name, event.data, event_id=event.id, occurred_at=event.occurred_at, wait=wait
        )
    if as_json:
        print_json(result)
        return
    _print_emitted(name, result)
    if result.result is not None and result.result.outcome.value != "delivered":
        raise typer.Exit(2)


def _print_emitted(name: str, result: EmitResult) -> None:
    """What happened to an emitted event, and to each delivery when ``--wait`` was given."""
    if not result.matched:
        out.print(f"event {result.event_id}: no enabled rule matches {name!r}; nothing started")
        return
    state = "duplicate: already submitted, nothing new started" if result.duplicate else "started"
    out.print(f"event {result.event_id}: {state} (workflow {result.workflow_id})")
    if result.result is None:
        return
    out.print(f"outcome: {result.result.outcome.value}")
    for d in result.result.deliveries:
        line = f"  {d.service} (rule {d.rule_id}): {d.status.value} after {d.attempts} attempt(s)"
        if d.error:
            line += f": {d.error}"
        out.print(line, highlight=False)


async def logs_command(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    status: Annotated[str | None, typer.Option(help="ok, failed, sending or unknown.")] = None,
    direction: Annotated[str | None, typer.Option(help="in or out.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event id.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Only rows at or after this time.")] = None,
    before: Annotated[
        int | None, typer.Option(min=1, help="Only rows older than this id: the next page.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The delivery log, newest first: one row per attempt. A full page ends with the
    --before id of the next one (with --json: the last row's id)."""
    if status not in (None, *LogStatus):
        raise UsageError(f"--status must be one of {', '.join(LogStatus)}")
    if direction not in (None, "in", "out"):
        raise UsageError("--direction must be in or out")
    rows = await cli_state(ctx).with_store(
        lambda s: s.log.recent(
            service=service,
            status=status,
            direction=direction,
            event_id=event,
            since=since,
            before_id=before,
            limit=limit,
        )
    )
    if as_json:
        print_json(rows)
        return
    print_table(_LOG_TABLE.title, _LOG_TABLE.columns, [_LOG_TABLE.row(r) for r in rows])
    if len(rows) == limit:
        out.print(f"next page: --before {rows[-1].id}", highlight=False)
