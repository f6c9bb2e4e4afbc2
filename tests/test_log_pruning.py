"""Log upkeep is a Temporal schedule next to hub-consume-responses, not a worker timer: it
makes the day partitions ahead and drops those past HUB_LOG_RETENTION (see also
tests/test_log_partitions.py). `hub logs` pages with --before."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

from hub.core.models import LogEntryIn, LogStatus, PruneResult
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
    assert json.loads(decoded.data) == {"retention_days": settings.log_retention}

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


async def test_a_scheduled_run_drops_only_days_past_the_retention(temporal, store: Store, unique):
    today = datetime.now(UTC).date()
    await store.log.add(LogEntryIn(service=unique, event_id=f"{unique}-new", status=LogStatus.OK))
    for name, age in (("old", 32), ("kept", 29)):
        # Written then (the default partition takes it: its day has none yet).
        await store.pool.execute(
            """INSERT INTO delivery_log (created_at, direction, service, event_id, status)
               VALUES (now() - make_interval(days => $1), 'out', $2, $3, 'ok')""",
            age,
            unique,
            f"{unique}-{name}",
        )
    old_day = await store.pool.fetchval(
        "SELECT (created_at AT TIME ZONE 'UTC')::date FROM delivery_log WHERE event_id = $1",
        f"{unique}-old",
    )

    await temporal.get_schedule_handle(SCHEDULE_ID).trigger()

    async def pruned() -> list[str]:
        while True:
            rows = await store.log.recent(service=unique)
            if len(rows) == 2:
                return sorted(r.event_id or "" for r in rows)
            await asyncio.sleep(0.2)

    assert await asyncio.wait_for(pruned(), timeout=30) == [f"{unique}-kept", f"{unique}-new"]
    runs = [
        w
        async for w in temporal.list_workflows(
            "WorkflowType = 'PruneLogWorkflow' AND ExecutionStatus = 'Completed'"
        )
    ]
    assert runs, "the schedule's run shows in Temporal visibility"
    results = [
        PruneResult.model_validate(
            await temporal.get_workflow_handle(r.id, run_id=r.run_id).result()
        )
        for r in runs
    ]
    assert any(f"delivery_log_p{old_day:%Y%m%d}" in r.dropped for r in results), results
    ahead = {f"delivery_log_p{today + timedelta(days=d):%Y%m%d}" for d in range(8)}
    partitions = await store.pool.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'delivery_log'::regclass"""
    )
    assert ahead <= {r["relname"] for r in partitions}


async def test_hub_logs_pages_with_before(cli, store: Store, unique):
    for n in range(5):
        await store.log.add(
            LogEntryIn(service=unique, event_id=f"{unique}-{n}", status=LogStatus.OK)
        )
    first = await cli("logs", "--service", unique, "--limit", "2")
    assert first.code == 0, first
    *_, hint = first.stdout.strip().splitlines()
    assert hint.startswith("next page: --before ")
    before = hint.rsplit(" ", 1)[1]
    page = (
        await cli("logs", "--service", unique, "--limit", "2", "--before", before, "--json")
    ).json()
    assert [r["event_id"] for r in page] == [f"{unique}-2", f"{unique}-1"]
    assert all(r["id"] < int(before) for r in page)
    last = await cli("logs", "--service", unique, "--limit", "2", "--before", str(page[-1]["id"]))
    assert f"{unique}-0" in last.stdout and "next page" not in last.stdout
    everything = (await cli("logs", "--service", unique, "--json")).json()
    assert [r["event_id"] for r in everything] == [f"{unique}-{n}" for n in range(4, -1, -1)]
