"""Replaying the dead-letter queue: one new workflow per replay, bulk replays bounded."""

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from hub.core.models import ReplayCounts, ReplayInput, ReplayOutcome
from hub.core.visibility import HUB_EVENT_ID, HUB_EVENT_NAME
from hub.store import ConflictError, NotFoundError, Store
from workflows.replay import ReplayDeadLetterWorkflow, replay_workflow_id

DEFAULT_CONCURRENCY = 16


class Replayer:
    """Starts replays of DLQ rows for the CLI and the API."""

    def __init__(self, temporal: Client, store: Store, task_queue: str) -> None:
        self._temporal = temporal
        self._store = store
        self._task_queue = task_queue

    async def start(self, dlq_id: int) -> WorkflowHandle[ReplayDeadLetterWorkflow, ReplayOutcome]:
        """Count a replay of an unresolved row and start its workflow.

        Raises NotFoundError for an unknown row and ConflictError for a resolved one.
        """
        entry, replay = await self._store.dlq.begin_replay(dlq_id)
        return await self._temporal.start_workflow(
            ReplayDeadLetterWorkflow.run,
            ReplayInput(dlq_id=dlq_id, replay=replay),
            id=replay_workflow_id(dlq_id, replay),
            task_queue=self._task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(HUB_EVENT_NAME, entry.event_name),
                    SearchAttributePair(HUB_EVENT_ID, entry.event_id),
                ]
            ),
        )

    async def replay_many(
        self,
        dlq_ids: Iterable[int],
        *,
        wait: bool = True,
        wait_seconds: float | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: Callable[[int, ReplayOutcome | None], None] | None = None,
    ) -> ReplayCounts:
        """Replay rows with at most ``concurrency`` replays (or starts) in flight.

        With ``wait``, each replay's outcome is counted; ``wait_seconds`` bounds that wait
        for the whole call, and a replay not ended by then is counted as started only.
        ``progress(dlq_id, outcome)`` is called after each row (outcome None when not waiting,
        skipped or still running). Rows that are resolved or gone meanwhile are skipped.
        """
        ids = list(dlq_ids)
        counts = ReplayCounts(requested=len(ids))
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        deadline = None if wait_seconds is None else loop.time() + wait_seconds

        async def one(dlq_id: int) -> None:
            async with gate:
                try:
                    handle = await self.start(dlq_id)
                except (NotFoundError, ConflictError):
                    counts.skipped += 1
                    if progress:
                        progress(dlq_id, None)
                    return
                counts.started += 1
                outcome = None
                if wait:
                    # Not ended by the deadline: counted as started only (still running).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(deadline):
                            outcome = await handle.result()
            if outcome is not None:
                if outcome.delivered:
                    counts.delivered += 1
                else:
                    counts.failed += 1
            if progress:
                progress(dlq_id, outcome)

        await asyncio.gather(*(one(i) for i in ids))
        return counts
