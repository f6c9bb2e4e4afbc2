"""The messages of an ordered lane (workflows.lane): its tickets, limits and start input.

Plain pydantic models, apart from the lane workflow's module: the workflow sandbox re-imports
a workflow's module for every new run, and building these classes each time was a third of
a worker's CPU (bench/results.md, issue 16).
"""

from pydantic import BaseModel, Field

ENQUEUE = "enqueue"
"""The lane's signal: a ticket to queue (signal-with-start by the emitter)."""
LANE_TURN = "lane_turn"
"""The event workflow's signal: its delivery in the lane may go."""
LANE_DONE = "lane_done"
"""The lane's signal: the event's deliveries in it are delivered or dead-lettered."""
DEPTH = "depth"
"""The lane's query: how many tickets wait."""

MAX_TICKETS = 500
"""Tickets one run serves before it continues as new, so its history stays small."""


class Ticket(BaseModel):
    """An event's place in a lane: its id (deduplicates) and the workflow to give turns to."""

    event_id: str
    workflow_id: str


class LaneLimits(BaseModel):
    """How a lane paces itself; the emitter chooses them when it starts a lane."""

    max_tickets: int = Field(default=MAX_TICKETS, ge=1)
    idle_seconds: float = Field(default=60.0, gt=0)
    """How long an empty lane waits for a ticket before it completes."""
    check_seconds: float = Field(default=10.0, gt=0)
    """How long a head may run before the lane checks that its workflow still exists (the
    wait doubles, up to five minutes, while it keeps running)."""
    start_grace_seconds: float = Field(default=120.0, gt=0)
    """How long a head whose workflow does not exist yet (the emitter tickets first) is
    waited for before it is skipped."""


class LaneInput(BaseModel):
    """A lane run's start: its queue and memory, carried across continue-as-new."""

    lane: str
    limits: LaneLimits = Field(default_factory=LaneLimits)
    queue: list[Ticket] = Field(default_factory=list)
    finished: list[str] = Field(default_factory=list)
    """Queued events whose workflows already said lane_done (they had nothing to send)."""
    done: list[str] = Field(default_factory=list)
    """Event ids served recently, oldest first."""
