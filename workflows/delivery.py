"""Sending one delivery from a workflow: one activity per attempt, the waits in between.

The workflow counts attempts, not Temporal: an activity execution makes one attempt and says
its number (from the delivery log, so an attempt cut off by a crash counts). A failure of the
hub itself (its database is down) is retried inside that execution by Temporal's policy,
with backoff capped at a few seconds, and uses up no attempt.
"""

from datetime import timedelta
from typing import NamedTuple

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows.bookkeeping import bookkeeping

with workflow.unsafe.imports_passed_through():
    from activities.attempt import DELIVERY_ERRORS, HUB_UNAVAILABLE, REJECTED
    from activities.delivery import DeliveryActivities
    from activities.store import StoreActivities
    from hub.core.models import AttemptResult, Delivery, LogUpdate, ServiceType

# Time the activity may take beyond the service's own timeout (logging, connecting).
ACTIVITY_MARGIN = timedelta(seconds=10)
# The hub's own failures: retried every few seconds for about two hours, then the delivery
# is dead-lettered as the hub's failure (never the receiver's), to be replayed.
HUB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=1440,
    non_retryable_error_types=list(DELIVERY_ERRORS),
)
# The first attempt runs inside the workflow task; a short hub failure is retried there,
# a longer one moves to a regular activity.
LOCAL_HUB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_attempts=3,
    non_retryable_error_types=list(DELIVERY_ERRORS),
)


class Failure(NamedTuple):
    """Why a delivery failed for good: the last error, attempts made, the error's type."""

    error: str
    attempts: int
    error_type: str | None


async def send(delivery: Delivery) -> AttemptResult | Failure:
    """Deliver with the service's retry policy (at most 5 attempts, doubling backoff).

    The first attempt runs as a local activity, inside the workflow task that planned it: a
    healthy delivery then costs the engine one workflow task. Later attempts run as regular
    activities after the wait the failure asked for (Retry-After, the circuit's cooldown) or
    the backoff, so every attempt, its error and its wait stay visible in the history.
    """
    retry = delivery.retry
    started = workflow.info().workflow_start_time  # bounds the log lookups (by partition)
    made = 0
    local = True
    while True:
        try:
            attempt = {"first_attempt": made + 1, "workflow_started": started}
            result = await _attempt(delivery.model_copy(update=attempt), local)
        except FailureError as err:
            cause = activity_cause(err)
            if not isinstance(cause, ApplicationError) or cause.type not in DELIVERY_ERRORS:
                final = isinstance(cause, ApplicationError) and cause.non_retryable
                if local and not final:
                    local = False  # a longer outage: wait it out as a regular activity
                    continue
                return Failure(_hub_failure(cause or err), made, HUB_UNAVAILABLE)
            made = max(made + 1, int(cause.details[0]) if cause.details else made + 1)
            await _write_unlogged(cause.details[1] if len(cause.details) > 1 else None)
            if cause.type == REJECTED or made >= retry.max_attempts:
                return Failure(cause.message, made, cause.type)
            backoff = timedelta(seconds=max(retry.backoff, 0.001) * 2 ** (made - 1))
            await workflow.sleep(cause.next_retry_delay or backoff)
            local = False
            continue
        await _write_unlogged(result.unlogged)
        return result


async def _attempt(delivery: Delivery, local: bool) -> AttemptResult:
    """One attempt, in the workflow task (local) or as a regular activity."""
    activity = (
        DeliveryActivities.deliver_http
        if delivery.service_type is ServiceType.HTTP
        else DeliveryActivities.deliver_amqp
    )
    timeout = timedelta(seconds=delivery.retry.timeout) + ACTIVITY_MARGIN
    if local:
        return await workflow.execute_local_activity_method(
            activity, delivery, start_to_close_timeout=timeout, retry_policy=LOCAL_HUB_RETRY
        )
    return await workflow.execute_activity_method(
        activity,
        delivery,
        start_to_close_timeout=timeout,
        retry_policy=HUB_RETRY,
        priority=task_priority(delivery),
    )


def task_priority(delivery: Delivery) -> Priority:
    """Queue the delivery's tasks by its rule's priority, fairly between services by weight."""
    return Priority(
        priority_key=delivery.priority,
        fairness_key=delivery.service[:64],
        fairness_weight=delivery.weight,
    )


async def _write_unlogged(unlogged: LogUpdate | dict[str, object] | None) -> None:
    """Write an attempt's outcome that the activity could not (its database blipped).

    If that fails too, the delivery goes on: the outcome stays in this history.
    """
    if unlogged is None:
        return
    try:
        await bookkeeping(StoreActivities.record_attempt, LogUpdate.model_validate(unlogged))
    except ActivityError as err:
        workflow.logger.warning("an attempt's outcome stays unlogged: %s", activity_cause(err))


def _hub_failure(cause: BaseException) -> str:
    message = cause.message if isinstance(cause, FailureError) else str(cause)
    return f"not delivered: the hub failed, not the receiver ({message}); replay it"


def activity_cause(err: FailureError) -> BaseException | None:
    """The activity's own error: wrapped in ActivityError, or bare from a local activity."""
    return err.cause if isinstance(err, ActivityError) else err
