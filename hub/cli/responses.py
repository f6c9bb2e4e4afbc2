"""``hub responses``: drain the AMQP response queues now instead of waiting for the schedule."""

from typing import Annotated
from uuid import uuid4

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.output import JsonOption, print_json, print_table
from hub.core.models import ConsumeInput
from hub.runtime.connections import connect_temporal

group = AsyncTyper(help="AMQP response queues.", no_args_is_help=True)


@group.command("consume")
async def responses_consume(
    ctx: typer.Context,
    max_messages: Annotated[int, typer.Option(min=1, help="At most this many per queue.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Drain every AMQP response queue once now (the schedule does it every minute)."""
    # Imported here: workflow modules are only needed by this command.
    from workflows.consume import SCHEDULE_ID, ConsumeResponsesWorkflow

    settings = cli_state(ctx).settings
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
