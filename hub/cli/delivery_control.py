"""Delivery control in ``hub service``: pause and resume, and the held counts the views show.

The counts come from Temporal's visibility (hub.engine.hold_counts); when Temporal cannot
be reached a view still prints, with the counts as unknown.
"""

from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer
from temporalio.service import RPCError

from hub.cli.context import cli_state
from hub.cli.output import JsonOption, out, print_fields, print_json, print_table
from hub.cli.parsing import parse_duration
from hub.cli.views import TableView
from hub.core.models import Service
from hub.engine.hold_counts import HeldCounts, held_counts, held_totals
from hub.engine.holds import wake_held

UNKNOWN = "unknown (Temporal unreachable)"
NO_RATE = frozenset({"none", ""})

# How the delivery control options of ``service add`` and ``service update`` look in --help.
# Numbers are taken as text and parsed by the model, so a bad one is a one-line error too.
Weight = Annotated[
    str | None,
    typer.Option(
        help="Share of worker capacity under a backlog, against other services (> 0).",
        metavar="<number>",
    ),
]
RateOpt = Annotated[
    str | None,
    typer.Option(
        "--rate", help="At most N/s or N/min deliveries, across workers; update: none removes."
    ),
]
MaxHold = Annotated[
    str | None,
    typer.Option(
        help="How long a delivery may wait (paused, open circuit, rate) before the DLQ: "
        "24h, 30m, 90s or seconds."
    ),
]


def control_fields(fields: dict[str, object]) -> dict[str, object]:
    """The options as model fields: ``--rate none`` is an explicit null (no limit), and
    ``--max-hold 24h`` is seconds."""
    values = dict(fields)
    rate = values.get("rate")
    if isinstance(rate, str) and rate.strip().lower() in NO_RATE:
        values["rate"] = None
    hold = values.get("max_hold")
    if isinstance(hold, str):
        values["max_hold"] = parse_duration(hold.strip()).total_seconds()
    return values


def duration_text(seconds: float) -> str:
    """``86400`` -> ``24h``, ``90`` -> ``90s``: the largest unit that divides it."""
    whole = int(seconds)
    if whole != seconds or whole <= 0:
        return f"{seconds:g}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0 and (unit != "d" or whole > 86400):
            return f"{whole // size}{unit}"
    return f"{whole}s"


def held_text(counts: HeldCounts | None) -> str:
    """``3 (paused 2, rate_limited 1)``, ``0``, or unknown."""
    if counts is None:
        return UNKNOWN
    parts = [f"{reason} {n}" for reason, n in counts.by_reason.items() if n]
    return f"{counts.total} ({', '.join(parts)})" if parts else str(counts.total)


def held_json(counts: HeldCounts | None) -> dict[str, Any]:
    """The held fields of ``show --json``: nulls when Temporal could not say."""
    return {
        "held": counts.total if counts else None,
        "held_by_reason": dict(counts.by_reason) if counts else None,
    }


def paused_text(service: Service) -> str:
    """When the service was paused, or ``no``."""
    return f"since {service.paused_at:%Y-%m-%d %H:%M:%S %Z}" if service.paused_at else "no"


async def show_service(
    ctx: typer.Context,
    name: str,
    as_json: bool,
    fields: Callable[[Service], dict[str, Any]],
) -> None:
    """``service show``: the stored fields and how many deliveries the service holds."""
    state = cli_state(ctx)
    service = await state.with_store(lambda s: s.services.get(name))
    counts = await held_counts(await state.temporal_or_none(), service.name)
    if as_json:
        print_json(service.model_dump(mode="json") | held_json(counts))
    else:
        print_fields(fields(service) | {"held": held_text(counts)})


async def list_services(ctx: typer.Context, as_json: bool, view: TableView[Service]) -> None:
    """``service list``: the table (or JSON) with each service's held total."""
    state = cli_state(ctx)
    services = await state.with_store(lambda s: s.services.all())
    totals = await held_totals(await state.temporal_or_none(), [s.name for s in services])
    if as_json:
        print_json([s.model_dump(mode="json") | {"held": totals[s.name]} for s in services])
        return
    rows: list[Sequence[Any]] = [
        (*view.row(s), "?" if totals[s.name] is None else totals[s.name]) for s in services
    ]
    print_table(view.title, [*view.columns, "held"], rows)


async def service_pause(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """Hold every delivery to the service: they wait in their workflows, using no attempts,
    until ``resume`` (or their --max-hold, then the DLQ). Survives restarts."""
    service = await cli_state(ctx).with_store(lambda s: s.services.set_paused(name, True))
    if as_json:
        print_json(service)
        return
    out.print(
        f"paused service {service.name}: its deliveries are held until "
        f"hub service resume {service.name} (at most {duration_text(service.max_hold)})",
        highlight=False,
    )


async def service_resume(ctx: typer.Context, name: str, as_json: JsonOption = False) -> None:
    """Let the service's deliveries go again; the held ones are woken and go out at the
    service's rate (or HUB_RELEASE_RATE), not all at once."""
    state = cli_state(ctx)
    service = await state.with_store(lambda s: s.services.set_paused(name, False))
    temporal = await state.temporal_or_none()
    woken: int | None = None
    if temporal is not None:
        try:
            woken = await wake_held(temporal, service.name)
        except (RuntimeError, RPCError, OSError):  # not a failed resume: timers wake them
            woken = None
    if as_json:
        print_json(service.model_dump(mode="json") | {"woken": woken})
        return
    line = f"resumed service {service.name}: "
    if woken is None:
        line += "Temporal is unreachable; held deliveries wake on their own timers within 5 minutes"
    else:
        line += f"woke {woken} held deliver{'y' if woken == 1 else 'ies'}"
    out.print(line, highlight=False)
