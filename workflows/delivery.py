"""Sending one delivery from a workflow: the activity for its transport, under its retries."""

from datetime import timedelta
from typing import NamedTuple

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.delivery import DeliveryActivities
    from hub.core.models import AttemptResult, Delivery, ServiceType

# Time the activity may take beyond the service's own timeout (logging, connecting).
ACTIVITY_MARGIN = timedelta(seconds=10)


class Failure(NamedTuple):
    """Why a delivery failed for good: the last error, attempts made, the error's type."""

    error: str
    attempts: int
    error_type: str | None


async def send(delivery: Delivery) -> AttemptResult | Failure:
    """Deliver with the service's retry policy (at most 5 attempts, doubling backoff).

    The first attempt runs as a local activity, inside the workflow task that planned it:
    a healthy delivery then costs the engine one workflow task instead of two plus an
    activity task. If it fails retryably, the remaining attempts run as a regular activity
    after the wait the failure asked for (Retry-After, the circuit's cooldown) or the backoff,
    so every later attempt, its error and its wait stay visible in the workflow history.

    Returns the successful attempt, or why the delivery failed for good.
    """
    retry = delivery.retry
    activity = (
        DeliveryActivities.deliver_http
        if delivery.service_type is ServiceType.HTTP
        else DeliveryActivities.deliver_amqp
    )
    timeout = timedelta(seconds=retry.timeout) + ACTIVITY_MARGIN
    backoff = timedelta(seconds=max(retry.backoff, 0.001))
    try:
        return await workflow.execute_local_activity_method(
            activity,
            delivery,
            start_to_close_timeout=timeout,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
    except FailureError as err:
        cause = activity_cause(err)
        if retry.max_attempts == 1 or (isinstance(cause, ApplicationError) and cause.non_retryable):
            return describe_failure(err, 1)
        wait = cause.next_retry_delay if isinstance(cause, ApplicationError) else None
    await workflow.sleep(wait or backoff)
    try:
        return await workflow.execute_activity_method(
            activity,
            delivery.model_copy(update={"first_attempt": 2}),
            start_to_close_timeout=timeout,
            retry_policy=RetryPolicy(
                initial_interval=backoff * 2,
                backoff_coefficient=2.0,
                maximum_attempts=retry.max_attempts - 1,
            ),
        )
    except ActivityError as err:
        return describe_failure(err, retry.max_attempts)


def activity_cause(err: FailureError) -> BaseException | None:
    """The activity's own error: wrapped in ActivityError, or bare from a local activity."""
    return err.cause if isinstance(err, ActivityError) else err


def describe_failure(err: FailureError, max_attempts: int) -> Failure:
    """The last real error of a failed activity, how many attempts it made, its type."""
    cause = activity_cause(err)
    if isinstance(cause, ApplicationError):
        attempts = cause.details[0] if cause.details else max_attempts
        return Failure(cause.message, int(attempts), cause.type)
    message = str(cause) if cause is not None else str(err)
    exhausted = isinstance(err, ActivityError) and (
        err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
    )
    return Failure(message, max_attempts if exhausted else 1, None)
