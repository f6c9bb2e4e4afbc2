"""``hub dlq``: deliveries that failed for good, to inspect, send again or drop."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.errors import UsageError
from hub.cli.output import JsonOption, err_console, out, print_json
from hub.cli.parsing import parse_duration
from hub.cli.views import TableView, show_list, show_one
from hub.core.models import DlqEntry, ReplayOutcome
from hub.engine.replay import Replayer
from hub.runtime.connections import connect_temporal
from hub.store import Store

group = AsyncTyper(
    help="The dead-letter queue: deliveries that failed for good.", no_args_is_help=True
)

_TABLE: TableView[DlqEntry] = TableView(
    "Dead-letter queue",
    ["id", "time", "event", "event id", "service", "rule", "attempts", "error"],
    lambda r: (
        r.id,
        r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        r.event_name,
        r.event_id,
        r.service,
        r.rule_id,
        r.attempts,
        r.error,
    ),
)


def _fields(entry: DlqEntry) -> dict[str, Any]:
    """Every field, the stored event as one line of JSON."""
    values = entry.model_dump(mode="json")
    values["event"] = json.dumps(values["event"])
    return values


@group.command("list")
async def dlq_list(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event name or id.")] = None,
    resolved: Annotated[bool, typer.Option("--all", help="Include resolved rows.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: JsonOption = False,
) -> None:
    """List dead-lettered deliveries, newest first."""
    await show_list(
        ctx,
        as_json,
        lambda s: s.dlq.recent(
            service=service, event=event, include_resolved=resolved, limit=limit
        ),
        _TABLE,
    )


@group.command("show")
async def dlq_show(ctx: typer.Context, dlq_id: int, as_json: JsonOption = False) -> None:
    """Show one DLQ row with its rendered payload and last error."""
    await show_one(ctx, as_json, lambda s: s.dlq.get(dlq_id), _fields)


def _progress(*, as_json: bool, no_wait: bool) -> Callable[[int, ReplayOutcome | None], None]:
    """A line on stderr per replayed row, so stdout keeps only the summary (or the JSON)."""

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

    return progress


@group.command("replay")
async def dlq_replay(
    ctx: typer.Context,
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
    state = cli_state(ctx)
    temporal = await connect_temporal(state.settings)
    async with state.store(max_size=4) as store:
        targets = ids or await store.dlq.ids(service=service, event=event)
        replayer = Replayer(temporal, store, state.settings.task_queue)
        counts = await replayer.replay_many(
            targets,
            wait=not no_wait,
            concurrency=concurrency,
            progress=_progress(as_json=as_json, no_wait=no_wait),
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


@group.command("delete")
async def dlq_delete(
    ctx: typer.Context, dlq_ids: Annotated[list[int], typer.Argument(help="DLQ ids.")]
) -> None:
    """Delete DLQ rows (the delivery log keeps their attempts)."""

    async def delete(store: Store) -> None:
        for dlq_id in dlq_ids:
            await store.dlq.delete(dlq_id)

    await cli_state(ctx).with_store(delete)
    out.print(f"deleted {len(dlq_ids)} DLQ row(s)")


@group.command("flush")
async def dlq_flush(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option(help="Age, e.g. 30m, 12h, 7d, 2w: rows created before that go.")
    ] = "7d",
) -> None:
    """Delete DLQ rows older than an age, resolved or not."""
    cutoff = datetime.now(UTC) - parse_duration(older_than)
    removed = await cli_state(ctx).with_store(lambda s: s.dlq.flush(cutoff))
    out.print(f"flushed {removed} DLQ row(s) created before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
