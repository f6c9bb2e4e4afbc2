"""The hub's periodic jobs, as Temporal schedules: draining AMQP response queues every minute
and the delivery log's upkeep every hour (day partitions made ahead, those past the retention
dropped). Visible in the UI and ``temporal schedule list``."""

import logging
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from hub.config import Settings
from hub.core.models import ConsumeInput, PruneInput
from workflows import consume, prune

log = logging.getLogger(__name__)


def _every(seconds: float, workflow: Any, arg: object, workflow_id: str, queue: str) -> Schedule:
    """A schedule that starts one run every ``seconds``, skipping while one still runs."""
    return Schedule(
        action=ScheduleActionStartWorkflow(workflow, arg, id=workflow_id, task_queue=queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def hub_schedules(settings: Settings) -> dict[str, Schedule]:
    """Every schedule the hub runs, by schedule id."""
    queue = settings.task_queue
    return {
        consume.SCHEDULE_ID: _every(
            settings.responses_every,
            consume.ConsumeResponsesWorkflow.run,
            ConsumeInput(max_messages=settings.responses_max_per_run),
            f"{consume.SCHEDULE_ID}-run",
            queue,
        ),
        prune.SCHEDULE_ID: _every(
            settings.log_prune_every,
            prune.PruneLogWorkflow.run,
            PruneInput(retention_days=settings.log_retention),
            f"{prune.SCHEDULE_ID}-run",
            queue,
        ),
    }


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create each schedule, or bring an existing one in line with these settings."""
    for schedule_id, schedule in hub_schedules(settings).items():
        await _ensure(client, schedule_id, schedule)


async def _ensure(client: Client, schedule_id: str, schedule: Schedule) -> None:
    try:
        await client.create_schedule(schedule_id, schedule)
        log.info("created schedule %s", schedule_id)
    except ScheduleAlreadyRunningError:

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(updated)
