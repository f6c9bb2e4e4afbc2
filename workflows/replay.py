"""ReplayDeadLetterWorkflow: send a DLQ row's stored payload again, exactly as it was."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, FailureError

from workflows.delivery import Failure, activity_cause, send

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from hub.core.models import Outcome, ReplayInput, ReplayOutcome
    from hub.core.visibility import HUB_OUTCOME, HUB_SERVICES

STORE_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


def replay_workflow_id(dlq_id: int, replay: int) -> str:
    """Names the DLQ row and the replay number, so every replay is its own workflow."""
    return f"dlq-{dlq_id}-replay-{replay}"


@workflow.defn
class ReplayDeadLetterWorkflow:
    """No re-templating: the stored rendered payload goes to the stored endpoint."""

    @workflow.run
    async def run(self, replay: ReplayInput) -> ReplayOutcome:
        outcome = ReplayOutcome(
            dlq_id=replay.dlq_id,
            replay=replay.replay,
            workflow_id=workflow.info().workflow_id,
            delivered=False,
        )
        try:
            delivery = await workflow.execute_local_activity_method(
                StoreActivities.replay_delivery,
                replay,
                start_to_close_timeout=STORE_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
        except FailureError as err:
            cause = activity_cause(err)
            outcome.error = cause.message if isinstance(cause, ApplicationError) else str(err)
        else:
            outcome.delivery_id = delivery.id
            workflow.upsert_search_attributes([HUB_SERVICES.value_set([delivery.service])])
            result = await send(delivery)
            if isinstance(result, Failure):
                outcome.error, outcome.attempts = result.error, result.attempts
                outcome.error_type = result.error_type
            else:
                outcome.delivered, outcome.attempts = True, result.attempt

        await workflow.execute_activity_method(
            StoreActivities.finish_replay,
            outcome,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        state = Outcome.DELIVERED if outcome.delivered else Outcome.DEAD_LETTERED
        workflow.upsert_search_attributes([HUB_OUTCOME.value_set(state.value)])
        return outcome
