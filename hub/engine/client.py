"""The Python client SDK: emit events into the hub.

async with HubClient.connect() as hub:
    result = await hub.emit("order.created", {"id": 42}, event_id="order-42")
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import uuid4

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from hub.config import Settings
from hub.core.claims import EVENT_INLINE_MAX, claim_key
from hub.core.control import lane_id, order_value
from hub.core.limits import EventTooLarge, event_bytes
from hub.core.models import DispatchInput, DispatchResult, EmitResult, Event, Outcome
from hub.core.models.lane import ENQUEUE, LaneInput, LaneLimits, Ticket
from hub.core.tracing import span
from hub.core.visibility import (
    HUB_EVENT_ID,
    HUB_EVENT_NAME,
    HUB_OUTCOME,
    HUB_SERVICES,
    fit_keyword_list,
)
from hub.runtime.connections import connect_temporal, database_url
from hub.runtime.rule_index import RuleIndex
from hub.store import Store, StoreUnavailable
from hub.store.rules import RuleTarget
from workflows.dispatch import DispatchEventWorkflow
from workflows.lane import LaneWorkflow


def workflow_id_for(event_id: str) -> str:
    """One workflow per event id: a second submission finds the first."""
    return f"event-{event_id}"


class HubClient:
    """Emits events: checks the cached rule index, then starts one workflow per event."""

    def __init__(
        self,
        temporal: Client,
        index: RuleIndex,
        store: Store,
        *,
        task_queue: str,
        max_event_bytes: int,
        lane_limits: LaneLimits | None = None,
        eager_start: bool = False,
    ) -> None:
        self.temporal = temporal
        self.index = index
        self.store = store
        self.task_queue = task_queue
        self.max_event_bytes = max_event_bytes
        self.lane_limits = lane_limits or LaneLimits()
        """How the lanes this client starts pace themselves (workflows.lane)."""
        self.eager_start = eager_start
        """Ask the server to hand an event's first workflow task straight back to a worker
        that runs on ``temporal`` (the same Client object) in this process: it skips the
        task queue's round trip. Only for emitters that share a process with a worker."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        temporal: Client | None = None,
        store: Store | None = None,
        eager_start: bool = False,
    ) -> AsyncIterator["HubClient"]:
        """Connect to Temporal and the rule store (both from settings unless given).

        ``eager_start`` only helps when ``temporal`` is the client a running worker on the
        hub's task queue was built with (``hub dev``, ``hub api --with-worker``)."""
        settings = settings or Settings()
        temporal = temporal or await connect_temporal(settings)
        async with AsyncExitStack() as stack:
            if store is None:
                store = await stack.enter_async_context(
                    Store.open(database_url(settings), max_size=2)
                )
            index = RuleIndex(store, ttl=settings.rule_cache_seconds)
            await index.start()
            stack.push_async_callback(index.close)
            yield cls(
                temporal,
                index,
                store,
                task_queue=settings.task_queue,
                max_event_bytes=settings.max_event_bytes,
                eager_start=eager_start,
            )

    async def emit(
        self,
        name: str,
        data: dict[str, Any] | None = None,
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
        wait: bool = False,
    ) -> EmitResult:
        """Submit an event. Raises pydantic.ValidationError on a malformed event,
        EventTooLarge over HUB_MAX_EVENT_BYTES, StoreUnavailable while the database is down.

        An event that matches no rule starts nothing; a known event id starts nothing new.
        With ``wait``, returns once every delivery is delivered or dead-lettered.

        While tracing is on, this is a span, parent of the workflow's (hub.runtime.tracing).
        """
        with span("HubClient.emit", attributes={"hub.event.name": name}) as current:
            result = await self._emit(name, data, event_id, occurred_at, wait)
            if current is not None:
                current.set_attributes(
                    {
                        "hub.event.id": result.event_id,
                        "hub.matched": result.matched,
                        "hub.duplicate": result.duplicate,
                        "hub.services": result.services,
                    }
                )
            return result

    async def _emit(
        self,
        name: str,
        data: dict[str, Any] | None,
        event_id: str | None,
        occurred_at: datetime | None,
        wait: bool,
    ) -> EmitResult:
        event = Event.model_validate(
            {
                "id": event_id or str(uuid4()),
                "name": name,
                "data": data if data is not None else {},
                **({"occurred_at": occurred_at} if occurred_at else {}),
            }
        )
        size = event_bytes(event)
        if size > self.max_event_bytes:
            raise EventTooLarge(size, self.max_event_bytes)
        if not self.index.available:
            raise StoreUnavailable("the database is unreachable, so the rules cannot be checked")
        targets = await self.index.match(event.name)
        if not targets:
            return EmitResult(event_id=event.id, workflow_id=None, matched=False)
        services = sorted({t.service.name for t in targets})
        lanes = event_lanes(targets, event)
        await self._ticket(event, lanes)
        handle, duplicate = await self._start(
            event, size, services, start_priority(targets), list(lanes)
        )
        result: DispatchResult | None = await handle.result() if wait else None
        return EmitResult(
            event_id=event.id,
            workflow_id=handle.id,
            matched=True,
            duplicate=duplicate,
            services=services,
            result=result,
        )

    async def _ticket(self, event: Event, lanes: dict[str, int]) -> None:
        """Take the event's place in each of its ordered lanes (signal-with-start), before its
        workflow starts: a lane's order is the order its tickets were accepted in.

        A second emit of the same event id tickets again; the lane drops the duplicate.
        """
        ticket = Ticket(event_id=event.id, workflow_id=workflow_id_for(event.id))
        await asyncio.gather(
            *(
                self.temporal.start_workflow(
                    LaneWorkflow.run,
                    LaneInput(lane=lane, limits=self.lane_limits),
                    id=lane,
                    task_queue=self.task_queue,
                    start_signal=ENQUEUE,
                    start_signal_args=[ticket],
                    priority=Priority(priority_key=priority),
                )
                for lane, priority in lanes.items()
            )
        )

    async def _start(
        self, event: Event, size: int, services: list[str], priority: Priority, lanes: list[str]
    ) -> tuple[WorkflowHandle[Any, DispatchResult], bool]:
        """Start the event's workflow, or find the one a first submission started."""
        workflow_id = workflow_id_for(event.id)
        try:
            handle = await self.temporal.start_workflow(
                DispatchEventWorkflow.run,
                await self._dispatch_input(event, size, lanes),
                id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                priority=priority,
                request_eager_start=self.eager_start,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(HUB_EVENT_NAME, event.name),
                        SearchAttributePair(HUB_EVENT_ID, event.id),
                        SearchAttributePair(HUB_SERVICES, fit_keyword_list(services)),
                        SearchAttributePair(HUB_OUTCOME, Outcome.PENDING.value),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError:
            handle = self.temporal.get_workflow_handle_for(DispatchEventWorkflow.run, workflow_id)
            return handle, True
        return handle, not _was_started(handle)

    async def _dispatch_input(self, event: Event, size: int, lanes: list[str]) -> DispatchInput:
        """The workflow input: the event, its data claim-checked when it is large, and the
        lanes it was ticketed in."""
        if size <= EVENT_INLINE_MAX:
            return DispatchInput(event=event, config_version=self.index.version, lanes=lanes)
        body = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))
        ref = claim_key("event", event.id, body)
        await self.store.claims.put(ref, body)
        return DispatchInput(
            event=event.model_copy(update={"data": {}}),
            config_version=self.index.version,
            data_ref=ref,
            lanes=lanes,
        )


def start_priority(targets: list[RuleTarget]) -> Priority:
    """The event workflow's place in the task queue: its most urgent rule's priority, and
    fairness between services (their names as the key, the largest weight)."""
    names = sorted({t.service.name for t in targets})
    return Priority(
        priority_key=min(t.rule.priority for t in targets),
        fairness_key="+".join(names).encode()[:64].decode(errors="ignore"),
        fairness_weight=max(t.service.weight for t in targets),
    )


def event_lanes(targets: list[RuleTarget], event: Event) -> dict[str, int]:
    """The lanes of the event's ordered rules, in rule order, each with the most urgent
    priority among its rules (the lane workflow's tasks are queued with it)."""
    lanes: dict[str, int] = {}
    dumped = event.model_dump(mode="json")
    for target in targets:
        if target.rule.order_key is None:
            continue
        lane = lane_id(target.service.name, order_value(target.rule.order_key, dumped))
        lanes[lane] = min(lanes.get(lane, target.rule.priority), target.rule.priority)
    return lanes


def _was_started(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether start_workflow created the execution, rather than joining a running one.

    With USE_EXISTING the server answers ``started=false`` for a running duplicate; the SDK
    keeps that response on the handle without a public accessor.
    """
    response = getattr(handle, "_start_workflow_response", None)
    return bool(getattr(response, "started", True))
