"""ReplayDeadLetterWorkflow: send a DLQ row's stored payload again, exactly as it was."""

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

from workflows.bookkeeping import bookkeeping
from workflows.delivery import Failure, activity_cause, send

with workflow.unsafe.imports_passed_through():
    from activities.store import StoreActivities
    from hub.core.models import Outcome, ReplayInput, ReplayOutcome
    from hub.core.visibility import HUB_OUTCOME, HUB_SERVICES


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
            delivery = await bookkeeping(StoreActivities.replay_delivery, replay, local=True)
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

        await bookkeeping(StoreActivities.finish_replay, outcome)
        state = Outcome.DELIVERED if outcome.delivered else Outcome.DEAD_LETTERED
        workflow.upsert_search_attributes([HUB_OUTCOME.value_set(state.value)])
        return outcome
