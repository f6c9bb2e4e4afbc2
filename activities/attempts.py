"""What every delivery attempt does, whatever the transport: look up the service, ask the
breaker, log the attempt (with the breaker's outcome in the same statement), and raise an
error that Temporal's retry policy understands."""

import random
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from hub.circuit import CIRCUIT_OPEN, CircuitBreaker, CircuitOpenError, Permit
from hub.models import Delivery, LogEntryIn, LogStatus, Service, attempt_log
from hub.rule_index import RuleIndex
from hub.store import Store

EXCERPT_CHARS = 500


class DeliveryError(ApplicationError):
    """A failed attempt. ``details[0]`` is the attempt number, for the compensation step."""


def delivery_error(
    message: str,
    attempt: int,
    *,
    retryable: bool,
    delay: timedelta | None = None,
    kind: str | None = None,
) -> DeliveryError:
    """The error Temporal records for a failed attempt (its retry policy reads the type)."""
    return DeliveryError(
        message,
        attempt,
        type=kind or ("DeliveryRetryable" if retryable else "DeliveryRejected"),
        non_retryable=not retryable,
        next_retry_delay=delay,
        # An expected outcome, logged by us in one line: no SDK traceback per attempt.
        category=ApplicationErrorCategory.BENIGN,
    )


def jittered(seconds: float) -> timedelta:
    """Spread retries of many refused calls so they do not return in one burst."""
    return timedelta(seconds=seconds * random.uniform(1.0, 1.1) + random.uniform(0.0, 0.25))


class DeliveryAttempts:
    """Bookkeeping shared by the HTTP and AMQP activities; one instance per worker."""

    def __init__(self, store: Store, index: RuleIndex, breaker: CircuitBreaker) -> None:
        self._store = store
        self._index = index
        self._breaker = breaker

    async def begin(self, delivery: Delivery, method: str) -> tuple[LogEntryIn, Service]:
        """The attempt's log row (failed until proven otherwise) and the service to call."""
        info = activity.info()
        log = attempt_log(
            delivery,
            workflow_id=info.workflow_id,
            method=method,
            attempt=delivery.first_attempt - 1 + info.attempt,
        )
        service = await self._index.service(delivery.service_id)
        if service is None:
            message = f"service {delivery.service!r} is disabled or was deleted"
            raise await self.reject(log, message, retryable=False)
        return log, service

    async def admit(self, log: LogEntryIn, service: Service) -> Permit:
        """The breaker's leave to call, or a logged refusal that retries after the cooldown."""
        try:
            return await self._breaker.admit(service)
        except CircuitOpenError as err:
            raise await self.reject(
                log, str(err), retryable=True, delay=jittered(err.retry_in), kind=CIRCUIT_OPEN
            ) from None

    async def reject(
        self,
        log: LogEntryIn,
        message: str,
        *,
        retryable: bool,
        delay: timedelta | None = None,
        kind: str | None = None,
    ) -> DeliveryError:
        """Log an attempt that never reached the service, and build its error."""
        log.error = message
        _warn(log, retryable)
        try:
            await self._store.add_log(log)
        except Exception:
            activity.logger.exception("could not log the attempt for %s", log.delivery_id)
        attempt = log.attempt or 0
        return delivery_error(message, attempt, retryable=retryable, delay=delay, kind=kind)

    async def finish(
        self,
        log: LogEntryIn,
        service: Service,
        permit: Permit,
        *,
        healthy: bool,
        error: DeliveryError | None,
    ) -> None:
        """Log the attempt and feed the breaker, then raise its error if it failed.

        A failure to write the log must not fail a delivery that went out: the retry would
        send it a second time.
        """
        if error is None:
            log.status = LogStatus.OK
        else:
            log.error = error.message
            _warn(log, not error.non_retryable)
        try:
            await self._breaker.record(service, permit, healthy=healthy, log=log)
        except Exception:
            activity.logger.exception("could not record the attempt for %s", log.delivery_id)
        if error is not None:
            raise error


def _warn(log: LogEntryIn, retryable: bool) -> None:
    """One line per failed attempt in the worker's log (the delivery log has the detail)."""
    activity.logger.warning(
        "delivery %s to %s, attempt %s failed (%s): %s",
        log.delivery_id,
        log.service,
        log.attempt,
        "will retry if attempts remain" if retryable else "not retryable",
        log.error,
    )
