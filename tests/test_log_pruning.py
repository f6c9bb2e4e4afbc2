"""Log pruning is a Temporal schedule next to hub-consume-responses, not a worker timer."""

import asyncio
import json

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from hub.core.models import LogEntryIn, LogStatus
from hub.engine.schedules import ensure_schedules
from hub.runtime.embedded import temporal_binary
from hub.store import Store
from workflows.consume import SCHEDULE_ID as CONSUME_SCHEDULE
from workflows.prune import SCHEDULE_ID


@pytest.fixture(autouse=True)
async def own_schedules(temporal, settings, worker):
    """Point the schedules at this session's worker, as its start-up did.

    Schedules are per namespace, and test_devstack runs a second hub (another task queue) on
    the same Temporal server, whose start-up takes them over.
    """
    await ensure_schedules(temporal, settings)


async def test_prune_schedule_exists_with_the_retention_setting(temporal, settings):
    description = await temporal.get_schedule_handle(SCHEDULE_ID).describe()
    schedule = description.schedule
    assert schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
    [interval] = schedule.spec.intervals
    assert interval.every.total_seconds() == settings.log_prune_every == 3600
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "PruneLogWorkflow"
    assert action.task_queue == settings.task_queue
    # describe() does not decode schedule arguments: the payload is as stored, encrypted.
    [arg] = action.args
    assert arg.metadata["encoding"] == b"binary/encrypted"
    [decoded] = await temporal.data_converter.payload_codec.decode([arg])
    assert json.loads(decoded.data) == {"retention_days": settings.log_retention_days}

    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        "schedule",
        "list",
        "--address",
        settings.temporal_address,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert SCHEDULE_ID in stdout.decode() and CONSUME_SCHEDULE in stdout.decode()


async def test_a_scheduled_run_deletes_only_rows_past_the_retention(temporal, store: Store, unique):
    for name in ("old", "new"):
        await store.log.add(
            LogEntryIn(service=unique, event_id=f"{unique}-{name}", status=LogStatus.OK)
        )
    await store.pool.execute(
        "UPDATE delivery_log SET created_at = now() - interval '31 days' WHERE event_id = $1",
        f"{unique}-old",
    )

    await temporal.get_schedule_handle(SCHEDULE_ID).trigger()

    async def pruned() -> list[str]:
        while True:
            rows = await store.log.recent(service=unique)
            if len(rows) == 1:
                return [r.event_id or "" for r in rows]
            await asyncio.sleep(0.2)

    assert await asyncio.wait_for(pruned(), timeout=30) == [f"{unique}-new"]
    runs = [
        w
        async for w in temporal.list_workflows(
            "WorkflowType = 'PruneLogWorkflow' AND ExecutionStatus = 'Completed'"
        )
    ]
    assert runs, "the schedule's run shows in Temporal visibility"
