"""Sending one delivery from a workflow: one activity per attempt, the waits in between.

The workflow counts attempts, not Temporal: an activity execution makes one attempt and says
its number (from the delivery log, so an attempt cut off by a crash counts). A failure of the
hub itself (its database is down) is retried inside that execution by Temporal's policy,
with backoff capped at a few seconds, and uses up no attempt.

A held delivery (service paused, circuit open, 429 throttle, rate spent: the activity says
DeliveryHeld) uses no attempt either: the workflow waits durably, shows HubOutcome "paused"
(its service is paused) or "held" (anything else) and HubHeld, then asks again. Paused and
open-circuit waits grow from 5 s to 300 s, so a day's hold stays a few hundred events of
history, and end early on the wake signal; rate and throttle waits are exact. A hold lasting
past the service's max hold is dead-lettered (HoldExpired).
"""

import contextlib
from datetime import datetime, timedelta
from typing import NamedTuple

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from workflows.bookkeeping import bookkeeping

with workflow.unsafe.imports_passed_through():
    from activities.attempt import DELIVERY_ERRORS, HUB_UNAVAILABLE, REJECTED
    from activities.delivery import DeliveryActivities
    from activities.holds import HELD, HOLD_EXPIRED, RATE_LEAD
    from activities.store import StoreActivities
    from hub.core.control import HoldReason, held_tags
    from hub.core.models import (
        AttemptResult,
        Delivery,
        FirstAttempt,
        LogUpdate,
        Outcome,
        ServiceType,
    )
    from hub.core.visibility import HUB_HELD, HUB_OUTCOME, fit_keyword_list

# Time the activity may take beyond the service's own timeout (logging, connecting).
ACTIVITY_MARGIN = timedelta(seconds=10)
# The hub's own failures: retried every few seconds for about two hours, then the delivery
# is dead-lettered as the hub's failure (never the receiver's), to be replayed.
HUB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=1440,
    non_retryable_error_types=[*DELIVERY_ERRORS, HELD],
)
# The first attempt runs inside the workflow task; a short hub failure is retried there,
# a longer one moves to a regular activity.
LOCAL_HUB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_attempts=3,
    non_retryable_error_types=[*DELIVERY_ERRORS, HELD],
)
HOLD_FIRST = 5.0
HOLD_LONGEST = 300.0
"""Seconds between re-checks of a paused service or an open circuit: 5, 10, 20 .. 300."""
WAKEABLE = (HoldReason.PAUSED, HoldReason.CIRCUIT_OPEN)


class Holds:
    """One workflow's held deliveries: the HubHeld tags it shows and the wakes it hears.

    Shared by the deliveries of one workflow (they may hold at once, for different
    services); the workflow's wake signal handler calls ``wake``.
    """

    def __init__(self) -> None:
        self._wakes: dict[str, int] = {}
        self._tags: dict[str, list[str]] = {}
        self._outcome: str | None = None

    def wake(self, service: str) -> None:
        """End the wakeable holds of ``service`` now (resume, circuit closed or reset)."""
        self._wakes[service] = self._wakes.get(service, 0) + 1

    def wakes(self, service: str) -> int:
        """How many wakes ``service`` has had: taken before an attempt, so a wake that
        arrives while the attempt that gets held is in flight still ends the hold."""
        return self._wakes.get(service, 0)

    async def wait(self, service: str, seconds: float, *, wakeable: bool, seen: int) -> None:
        """Wait ``seconds``, or, if ``wakeable``, until ``service`` has had more than
        ``seen`` wakes (at once if it already has)."""
        seconds = max(seconds, 0.05)
        if not wakeable:
            await workflow.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._wakes.get(service, 0) > seen, timeout=seconds
            )

    def enter(self, key: str, tags: list[str]) -> None:
        """Show a delivery as held (HubOutcome "paused" if its service is, else "held";
        its tags in HubHeld)."""
        if self._tags.get(key) == tags:
            return
        if not self._tags:
            self._outcome = workflow.info().typed_search_attributes.get(HUB_OUTCOME)
        self._tags[key] = tags
        self._publish()

    def leave(self, key: str) -> None:
        """The delivery goes on: when none is held, HubOutcome is what it was before."""
        if self._tags.pop(key, None) is not None:
            self._publish()

    def _publish(self) -> None:
        if self._tags:
            union = fit_keyword_list(sorted({t for tags in self._tags.values() for t in tags}))
            paused = any(tag.endswith(f":{HoldReason.PAUSED.value}") for tag in union)
            shown = Outcome.PAUSED if paused else Outcome.HELD
            workflow.upsert_search_attributes(
                [HUB_OUTCOME.value_set(shown.value), HUB_HELD.value_set(union)]
            )
            return
        held = (None, Outcome.HELD.value, Outcome.PAUSED.value)
        outcome = self._outcome if self._outcome not in held else None
        workflow.upsert_search_attributes(
            [HUB_OUTCOME.value_set(outcome or Outcome.PENDING.value), HUB_HELD.value_unset()]
        )


class _Hold:
    """The hold one delivery is in: why, since when, how many re-checks so far."""

    def __init__(self) -> None:
        self.reason: HoldReason | None = None
        self.since: datetime | None = None
        self.checks = 0
        self.slot_at: float | None = None
        self.wakes_seen = 0

    def wait(self, reason: HoldReason, seconds: float) -> float:
        """Seconds until the next check: exact for a throttle, a little early for a rate
        slot (the activity sleeps to it); growing (and jittered, so many held deliveries do
        not return together) for a pause or a circuit, never before the cooldown ends."""
        if reason is HoldReason.RATE_LIMITED:
            return seconds - RATE_LEAD
        if reason not in WAKEABLE:
            return seconds
        step = min(HOLD_LONGEST, HOLD_FIRST * 2.0 ** min(self.checks, 10))
        self.checks += 1
        return max(seconds, step) * workflow.random().uniform(1.0, 1.2)


class Failure(NamedTuple):
    """Why a delivery failed for good: the last error, attempts made, the error's type."""

    error: str
    attempts: int
    error_type: str | None


async def send(
    delivery: Delivery, holds: Holds | None = None, first: FirstAttempt | None = None
) -> AttemptResult | Failure:
    """Deliver with the service's retry policy (at most 5 attempts, doubling backoff);
    hold it, using no attempt, while the activity says so (``holds``: the workflow's).

    The first attempt runs as a local activity, inside the workflow task that planned it: a
    healthy delivery then costs the engine one workflow task. ``first`` is that attempt when
    it was made with the plan (activities.dispatch). Later attempts run as regular
    activities after the wait the failure asked for (Retry-After, the circuit's cooldown) or
    the backoff, so every attempt, its error and its wait stay visible in the history.
    """
    holds = holds or Holds()
    result = await _send(delivery, holds, first)
    holds.leave(delivery.id)  # not in a finally: an evicted workflow may not upsert
    return result


def _made(first: FirstAttempt) -> AttemptResult:
    """The first attempt made with the plan: its result, or its error raised again."""
    if isinstance(first, AttemptResult):
        return first
    delay = first.next_retry_seconds
    raise ApplicationError(
        first.message,
        *first.details,
        type=first.type,
        non_retryable=first.non_retryable,
        next_retry_delay=None if delay is None else timedelta(seconds=delay),
    )


async def _send(
    delivery: Delivery, holds: Holds, first: FirstAttempt | None
) -> AttemptResult | Failure:
    retry = delivery.retry
    started = workflow.info().workflow_start_time  # bounds the log lookups (by partition)
    made = 0
    local = True
    hold = _Hold()
    last_error: str | None = None
    while True:
        try:
            attempt = {"first_attempt": made + 1, "workflow_started": started}
            hold.wakes_seen = holds.wakes(delivery.service)
            if first is not None:
                made_first, first = first, None
                result = _made(made_first)
            else:
                result = await _attempt(delivery.model_copy(update=attempt), local, hold)
        except FailureError as err:
            cause = activity_cause(err)
            if isinstance(cause, ApplicationError) and cause.type == HELD:
                expired = await _held(delivery, holds, hold, cause)
                if expired is not None:
                    if last_error is not None:
                        expired += f" (last error: {last_error})"
                    return Failure(expired, made, HOLD_EXPIRED)
                local = False
                continue
            if not isinstance(cause, ApplicationError) or cause.type not in DELIVERY_ERRORS:
                final = isinstance(cause, ApplicationError) and cause.non_retryable
                if local and not final:
                    local = False  # a longer outage: wait it out as a regular activity
                    continue
                return Failure(_hub_failure(cause or err), made, HUB_UNAVAILABLE)
            made = max(made + 1, int(cause.details[0]) if cause.details else made + 1)
            hold = _Hold()  # a real try ended the hold
            last_error = cause.message
            holds.leave(delivery.id)
            await _write_unlogged(cause.details[1] if len(cause.details) > 1 else None)
            if cause.type == REJECTED or made >= retry.max_attempts:
                return Failure(cause.message, made, cause.type)
            backoff = timedelta(seconds=max(retry.backoff, 0.001) * 2 ** (made - 1))
            await workflow.sleep(cause.next_retry_delay or backoff)
            local = False
            continue
        await _write_unlogged(result.unlogged)
        return result


async def _held(
    delivery: Delivery, holds: Holds, hold: _Hold, cause: ApplicationError
) -> str | None:
    """Wait out one hold (showing it); the DLQ error if it lasted past the max hold."""
    reason, seconds, max_hold = (
        HoldReason(cause.details[0]),
        float(cause.details[1]),
        float(cause.details[2]),
    )
    slot_at = cause.details[3] if len(cause.details) > 3 else None
    now = workflow.now()
    hold.since = hold.since or now
    held_for = (now - hold.since).total_seconds()
    if held_for >= max_hold:
        return (
            f"hold expired: held {held_for:.0f}s ({reason.value}), past the service's max hold of "
            f"{max_hold:g}s: not sent; replay it when the service takes deliveries again"
        )
    holds.enter(delivery.id, held_tags(delivery.service, reason))
    wait = min(hold.wait(reason, seconds), max_hold - held_for)
    await holds.wait(delivery.service, wait, wakeable=reason in WAKEABLE, seen=hold.wakes_seen)
    hold.reason = reason
    hold.slot_at = float(slot_at) if slot_at is not None else None
    return None


async def _attempt(delivery: Delivery, local: bool, hold: _Hold | None = None) -> AttemptResult:
    """One attempt, in the workflow task (local) or as a regular activity, after ``hold``."""
    args = [delivery, None, None] if hold is None else [delivery, hold.reason, hold.slot_at]
    activity = (
        DeliveryActivities.deliver_http
        if delivery.service_type is ServiceType.HTTP
        else DeliveryActivities.deliver_amqp
    )
    timeout = timedelta(seconds=delivery.retry.timeout) + ACTIVITY_MARGIN
    if local:
        return await workflow.execute_local_activity_method(
            activity,
            args=args,
            start_to_close_timeout=timeout,
            retry_policy=LOCAL_HUB_RETRY,
        )
    return await workflow.execute_activity_method(
        activity,
        args=args,
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
