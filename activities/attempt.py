"""The one skeleton of a delivery attempt, whatever the transport: look up the service, open
its credentials, prepare the call, ask the breaker, send, then log the attempt (with the
breaker's outcome in the same statement) and raise an error Temporal's retry policy reads."""

import random
import time
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from hub.core.models import AttemptResult, Delivery, LogEntryIn, LogStatus, Service, attempt_log
from hub.runtime.breaker import CIRCUIT_OPEN, CircuitBreaker, CircuitOpenError, Permit
from hub.runtime.rule_index import RuleIndex
from hub.secrets import SecretBox, SecretKeyError
from hub.store import Store
from hub.transport.base import Transport


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


class DeliveryAttempt:
    """begin -> prepare -> breaker admit -> send -> log row + breaker outcome; one per worker."""

    def __init__(
        self, store: Store, index: RuleIndex, breaker: CircuitBreaker, box: SecretBox
    ) -> None:
        self._store = store
        self._index = index
        self._breaker = breaker
        self._box = box

    async def run(self, delivery: Delivery, transport: Transport) -> AttemptResult:
        """Make one attempt and log it; raise a retryable or non-retryable DeliveryError."""
        info = activity.info()
        attempt = delivery.first_attempt - 1 + info.attempt
        log = attempt_log(
            delivery,
            workflow_id=info.workflow_id or "",
            method=transport.method(delivery),
            attempt=attempt,
        )
        service = await self._index.service(delivery.service_id)
        if service is None:
            message = f"service {delivery.service!r} is disabled or was deleted"
            raise await self._reject(log, delivery_error(message, attempt, retryable=False))
        try:
            call = transport.prepare(delivery, service, self._box.credentials(service), attempt)
        except (ValueError, SecretKeyError) as err:
            log.target = getattr(err, "target", None)
            error = delivery_error(str(err), attempt, retryable=False)
            raise await self._reject(log, error) from None
        log.target = call.target
        permit = await self._admit(log, service)

        started = time.perf_counter()
        sent = await call.send()
        log.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        log.status_code, log.response_excerpt = sent.status_code, sent.excerpt
        failed = None
        if sent.error is not None:
            failed = delivery_error(
                sent.error, attempt, retryable=sent.retryable, delay=sent.retry_after
            )
        await self._finish(log, service, permit, healthy=sent.healthy, error=failed)
        return AttemptResult(
            attempt=attempt, status_code=sent.status_code, latency_ms=log.latency_ms
        )

    async def _admit(self, log: LogEntryIn, service: Service) -> Permit:
        """The breaker's leave to call, or a logged refusal that retries after the cooldown."""
        try:
            return await self._breaker.admit(service)
        except CircuitOpenError as err:
            delay = jittered(err.retry_in)
            error = delivery_error(
                str(err), log.attempt or 0, retryable=True, delay=delay, kind=CIRCUIT_OPEN
            )
            raise await self._reject(log, error) from None

    async def _reject(self, log: LogEntryIn, error: DeliveryError) -> DeliveryError:
        """Log an attempt that never reached the service; return its error to raise."""
        log.error = error.message
        _warn(log, not error.non_retryable)
        try:
            await self._store.log.add(log)
        except Exception:
            activity.logger.exception("could not log the attempt for %s", log.delivery_id)
        return error

    async def _finish(
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
