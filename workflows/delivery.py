"""Sending one delivery from a workflow: the activity for its transport, under its retries."""

from datetime import timedelta
from typing import NamedTuple

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.amqp import AmqpActivities
    from activities.http import HttpActivities
    from hub.models import AttemptResult, Delivery, ServiceType

# Time the activity may take beyond the service's own timeout (logging, connecting).
ACTIVITY_MARGIN = timedelta(seconds=10)


class Failure(NamedTuple):
    """Why a delivery failed for good: the last error, attempts made, the error's type."""

    error: str
    attempts: int
    error_type: str | None


async def send(delivery: Delivery) -> AttemptResult:
    """Deliver with the service's retry policy (at most 5 attempts, doubling backoff).

    Raises ActivityError once the attempts are spent or an attempt fails for good.
    """
    retry = delivery.retry
    activity = (
        HttpActivities.deliver
        if delivery.service_type is ServiceType.HTTP
        else AmqpActivities.publish
    )
    return await workflow.execute_activity_method(
        activity,
        delivery,
        start_to_close_timeout=timedelta(seconds=retry.timeout) + ACTIVITY_MARGIN,
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=max(retry.backoff, 0.001)),
            backoff_coefficient=2.0,
            maximum_attempts=retry.max_attempts,
        ),
    )


def describe_failure(err: ActivityError, max_attempts: int) -> Failure:
    """The last real error of a failed activity, how many attempts it made, its type."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        attempts = cause.details[0] if cause.details else max_attempts
        return Failure(cause.message, int(attempts), cause.type)
    message = str(cause) if cause is not None else str(err)
    attempts = max_attempts if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED else 1
    return Failure(message, attempts, None)
