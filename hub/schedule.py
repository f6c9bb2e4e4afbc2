"""The Temporal schedule that drains AMQP response queues every minute."""

import logging
from datetime import timedelta

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
from hub.models import ConsumeInput
from workflows.consume import SCHEDULE_ID, ConsumeResponsesWorkflow

log = logging.getLogger(__name__)


def response_schedule(settings: Settings) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ConsumeResponsesWorkflow.run,
            ConsumeInput(max_messages=settings.responses_max_per_run),
            id=f"{SCHEDULE_ID}-run",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.responses_every))]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_response_schedule(client: Client, settings: Settings) -> None:
    """Create the schedule, or bring an existing one in line with these settings."""
    schedule = response_schedule(settings)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        log.info("created schedule %s", SCHEDULE_ID)
    except ScheduleAlreadyRunningError:

        def updated(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(updated)
