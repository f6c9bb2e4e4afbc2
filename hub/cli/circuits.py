"""``hub circuit``: the per-service circuit breakers, to watch and to close by hand."""

from typing import Annotated

import typer
from temporalio.service import RPCError

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.errors import UsageError
from hub.cli.output import JsonOption, out
from hub.cli.views import TableView, show_list
from hub.core.control import HoldReason
from hub.core.models import Circuit
from hub.engine.holds import wake_held

group = AsyncTyper(help="Circuit breakers, one per service.", no_args_is_help=True)

_TABLE: TableView[Circuit] = TableView(
    "Circuits",
    ["service", "state", "failures", "threshold", "opened at", "retry in (s)"],
    lambda c: (
        c.service,
        c.state.value,
        c.failures,
        c.threshold,
        c.opened_at.strftime("%Y-%m-%d %H:%M:%S") if c.opened_at else None,
        f"{c.retry_in:.1f}" if c.retry_in else None,
    ),
)


@group.command("list")
async def circuit_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every service's circuit: state, consecutive failures, seconds until a probe."""
    await show_list(ctx, as_json, lambda s: s.circuits.all(), _TABLE)


@group.command("reset")
async def circuit_reset(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Service whose circuit to close.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Close every circuit.")] = False,
) -> None:
    """Close a circuit by hand (failures back to 0) and wake the deliveries it held."""
    if (name is None) == (not all_):
        raise UsageError("name one service, or give --all")
    state = cli_state(ctx)
    count = await state.with_store(lambda s: s.circuits.reset(None if all_ else name))
    out.print(f"reset {count} circuit(s)")
    temporal = await state.temporal_or_none()
    if temporal is None:
        return  # the held deliveries wake on their own timers
    circuits = await state.with_store(lambda s: s.circuits.all())
    for service in [name] if name else [c.service for c in circuits]:
        try:
            await wake_held(temporal, service, HoldReason.CIRCUIT_OPEN)
        except RPCError:
            return  # as above
