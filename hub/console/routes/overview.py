"""The overview: traffic per minute, outcomes, latency by service, DLQ depth and open circuits
over the last hour, with links into the Temporal UI; htmx reloads its panels every 10 s.

The database's figures come from ``store.activity`` (small reads whatever the size of the log)
and the outcomes from Temporal visibility (``count_workflows`` by ``HubOutcome``). Either may be
down: its panels then say so, and the rest of the page still shows.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from temporalio.service import RPCError

from hub.console.auth import SessionDep
from hub.console.charts import Series, hbars, time_bars
from hub.console.rendering import render
from hub.console.session import Session
from hub.core.models import Circuit, CircuitState, Outcome
from hub.core.visibility import HUB_OUTCOME
from hub.engine.state import HubState
from hub.store import UNAVAILABLE_ERRORS
from hub.store.activity import DlqDepth, MinuteCounts, ServiceLatency

log = logging.getLogger(__name__)

router = APIRouter()

REFRESH_SECONDS = 10
TEMPORAL_TIMEOUT = 5.0
"""Seconds the outcome counts may take before the panel says Temporal is unavailable."""
DISPATCH_WORKFLOW = "DispatchEventWorkflow"
OUTCOMES: tuple[tuple[Outcome, str, str], ...] = (
    (Outcome.DELIVERED, "Delivered", "ok"),
    (Outcome.DEAD_LETTERED, "Dead-lettered", "bad"),
    (Outcome.PARTIAL, "Partial", "warn"),
    (Outcome.NO_MATCH, "No match", "none"),
    (Outcome.PENDING, "In flight", "none"),
)
"""(outcome, label, css) of the outcome panel."""


@dataclass
class Overview:
    """What the panels show; an ``*_error`` says why a source gave nothing."""

    minutes: list[MinuteCounts] = field(default_factory=list)
    latency: list[ServiceLatency] = field(default_factory=list)
    dlq: list[DlqDepth] = field(default_factory=list)
    circuits: list[Circuit] = field(default_factory=list)
    database_error: str = ""
    outcomes: dict[str, int] = field(default_factory=dict)
    since: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(hours=1))
    temporal_error: str = ""


def _state(request: Request) -> HubState:
    state: HubState = request.app.state.api
    return state


async def _read_database(state: HubState, view: Overview) -> None:
    store = state.store
    try:
        view.minutes, view.latency, view.dlq, circuits = await asyncio.gather(
            store.activity.per_minute(),
            store.activity.latency(),
            store.activity.dlq_depth(),
            store.circuits.all(),
        )
    except UNAVAILABLE_ERRORS as err:
        log.warning("overview: the database is unavailable: %s", err)
        view.database_error = "The database is unavailable; these figures will be back with it."
        return
    view.circuits = [c for c in circuits if c.state is not CircuitState.CLOSED]


def outcome_query(outcome: Outcome, since: datetime) -> str:
    """The visibility query of one outcome's dispatch workflows started since ``since``."""
    return (
        f"WorkflowType = '{DISPATCH_WORKFLOW}' AND {HUB_OUTCOME.name} = '{outcome.value}' "
        f"AND StartTime >= '{since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}'"
    )


async def _read_temporal(state: HubState, view: Overview) -> None:
    async def count(outcome: Outcome) -> int:
        counted = await state.temporal.count_workflows(outcome_query(outcome, view.since))
        return counted.count

    try:
        async with asyncio.timeout(TEMPORAL_TIMEOUT):
            counts = await asyncio.gather(*(count(o) for o, _, _ in OUTCOMES))
    except (RPCError, RuntimeError, TimeoutError) as err:
        log.warning("overview: Temporal visibility is unavailable: %s", err)
        view.temporal_error = "Temporal is unavailable; the outcomes will be back with it."
        return
    view.outcomes = {o.value: n for (o, _, _), n in zip(OUTCOMES, counts, strict=True)}


async def read_overview(state: HubState) -> Overview:
    """Everything the overview shows, read concurrently from the database and Temporal."""
    view = Overview()
    await asyncio.gather(_read_database(state, view), _read_temporal(state, view))
    return view


def charts(view: Overview) -> dict[str, Markup]:
    """The panels' SVG charts."""
    times = [m.minute for m in view.minutes]
    return {
        "events_chart": time_bars(
            times,
            [Series("events", "bar-a", [m.events for m in view.minutes])],
            label="Events per minute, last hour",
        ),
        "deliveries_chart": time_bars(
            times,
            [
                Series("delivered", "bar-ok", [m.ok for m in view.minutes]),
                Series("failed", "bar-bad", [m.failed for m in view.minutes]),
            ],
            label="Delivery attempts per minute, last hour",
        ),
        "latency_chart": hbars(
            [(s.service, (s.p50, s.p99)) for s in view.latency],
            ("p50", "p99"),
            ("bar-b", "bar-a"),
            label="Latency by service, last hour (p50 and p99, milliseconds)",
            unit=" ms",
        ),
        "dlq_chart": hbars(
            [(d.service, (float(d.unresolved),)) for d in view.dlq],
            ("unresolved",),
            ("bar-bad",),
            label="Unresolved DLQ rows by service",
        ),
    }


async def _render(request: Request, session: Session, template: str) -> HTMLResponse:
    view = await read_overview(_state(request))
    context: dict[str, Any] = {**charts(view)}
    return render(
        request,
        template,
        session,
        view=view,
        outcomes=OUTCOMES,
        outcome_query=outcome_query,
        refresh=REFRESH_SECONDS,
        totals={
            "events": sum(m.events for m in view.minutes),
            "ok": sum(m.ok for m in view.minutes),
            "failed": sum(m.failed for m in view.minutes),
        },
        **context,
    )


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, session: SessionDep) -> HTMLResponse:
    """The overview page."""
    return await _render(request, session, "overview.html")


@router.get("/overview/panels", response_class=HTMLResponse)
async def overview_panels(request: Request, session: SessionDep) -> HTMLResponse:
    """The panels alone: what htmx swaps in every ``REFRESH_SECONDS``."""
    return await _render(request, session, "_overview_panels.html")
