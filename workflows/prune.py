"""PruneLogWorkflow: keep the delivery log within its retention period (a schedule runs it)."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from hub.core.models import PruneInput

SCHEDULE_ID = "hub-prune-log"


@workflow.defn
class PruneLogWorkflow:
    """Delete log rows older than the retention; returns how many went."""

    @workflow.run
    async def run(self, prune: PruneInput) -> int:
        # A large backlog is one DELETE: give it time. The next run comes within the hour,
        # so a few retries are enough.
        return await workflow.execute_activity_method(
            StoreActivities.prune_log,
            prune.retention_days,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=10)),
        )
