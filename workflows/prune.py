"""PruneLogWorkflow: keep the delivery log within its retention period (a schedule runs it)."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from hub.core.models import PruneInput, PruneResult

SCHEDULE_ID = "hub-prune-log"


@workflow.defn
class PruneLogWorkflow:
    """Make the log's day partitions ahead of time, drop those past the retention, and
    delete old claim-checks; the result lists what changed."""

    @workflow.run
    async def run(self, prune: PruneInput) -> PruneResult:
        # Partition upkeep never waits long for a lock (the store's LOCK_TIMEOUT): what was
        # busy is left for the next run, within the hour, so a few retries are enough.
        return await workflow.execute_activity_method(
            StoreActivities.prune_log,
            prune,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=10)),
        )
