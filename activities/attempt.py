"""The one skeleton of a delivery attempt, whatever the transport: look up the service and the
payload, ask the breaker, record the attempt as in flight, send, then write its outcome (with
the breaker's verdict in the same statement) and raise an error the workflow reads.

Two kinds of failure are kept apart:
- the receiver's (an error answer, a timeout): a DeliveryError, which uses up one of the
  delivery's attempts; the workflow decides on the next one;
- the hub's own (its database is down): HubUnavailable, which Temporal retries with capped
  backoff, using up no attempt, since nothing was sent.

And a delivery that must wait is held (a DeliveryHeld error, see ``held_error``): its service is
paused, its circuit is open, a 429's Retry-After throttles the service, or its rate is
spent. A hold sends nothing, logs nothing and uses no attempt; the workflow waits it out.
"""

import asyncio
import time
from datetime import timedelta

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.holds import (
    DEFAULT_RELEASE_RATE,
    BackgroundWaker,
    Pacer,
    Waker,
    held_error,
)
from hub.core.control import HoldReason
from hub.core.models import (
    AttemptResult,
    CircuitState,
    Delivery,
    LogEntryIn,
    LogStatus,
    LogUpdate,
    Service,
    attempt_log,
)
from hub.runtime.breaker import (
    CIRCUIT_OPEN,
    CircuitBreaker,
    CircuitOpenError,
    Permit,
    ThrottledError,
)
from hub.runtime.metrics import HubMetrics, status_class
from hub.runtime.rule_index import RuleIndex
from hub.secrets import SecretBox, SecretKeyError
from hub.store import UNAVAILABLE_ERRORS, Store, StoreError
from hub.transport.base import Call, Sent, Transport

RETRYABLE = "DeliveryRetryable"
REJECTED = "DeliveryRejected"
DELIVERY_ERRORS = (RETRYABLE, REJECTED, CIRCUIT_OPEN)
"""The error types that use up an attempt; anything else is the hub's own failure (a
CircuitOpen is only in histories from before open circuits held deliveries)."""
HUB_UNAVAILABLE = "HubUnavailable"
FINISH_RETRIES = (0.2, 0.5, 1.0, 0.0)
"""Pauses after each try of an attempt's final log write before the workflow is asked to."""
HUB_BUDGET = 4.0
"""Seconds the hub's own work may take before a send, and again after it: with the send's
own timeout, within the activity's (the service timeout plus workflows.delivery's margin)."""


class DeliveryError(ApplicationError):
    """A failed attempt. ``details`` are the attempt number and, when the database refused
    the attempt's final log write, that write (a LogUpdate as JSON)."""


def delivery_error(
    message: str,
    attempt: int,
    *,
    retryable: bool,
    delay: timedelta | None = None,
    kind: str | None = None,
    unlogged: LogUpdate | None = None,
) -> DeliveryError:
    """The error Temporal records for a failed attempt (the workflow reads its type)."""
    details: tuple[object, ...] = (attempt,)
    if unlogged is not None:
        details += (unlogged.model_dump(mode="json"),)
    return DeliveryError(
        message,
        *details,
        type=kind or (RETRYABLE if retryable else REJECTED),
        non_retryable=not retryable,
        next_retry_delay=delay,
        # An expected outcome, logged by us in one line: no SDK traceback per attempt.
        category=ApplicationErrorCategory.BENIGN,
    )


def hub_unavailable(delivery: Delivery, err: BaseException) -> ApplicationError:
    """The hub's own failure: nothing was sent; Temporal retries without using an attempt."""
    reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    activity.logger.warning(
        "delivery %s to %s waits: the hub's database is unavailable (%s)",
        delivery.id,
        delivery.service,
        reason,
    )
    return ApplicationError(
        f"the hub's database is unavailable ({reason})",
        type=HUB_UNAVAILABLE,
        category=ApplicationErrorCategory.BENIGN,
    )


class DeliveryAttempt:
    """service -> payload -> breaker -> in-flight row -> send -> outcome; one per worker.

    Every attempt is counted in ``metrics`` by how it ended; a wait for the database too.
    """

    def __init__(
        self,
        store: Store,
        index: RuleIndex,
        breaker: CircuitBreaker,
        box: SecretBox,
        metrics: HubMetrics,
        *,
        wake: Waker | None = None,
        release_rate: float = DEFAULT_RELEASE_RATE,
    ) -> None:
        self._store = store
        self._index = index
        self._breaker = breaker
        self._box = box
        self._metrics = metrics
        self._pacer = Pacer(store, metrics, release_rate)
        self._waker = BackgroundWaker(wake)

    async def run(
        self,
        delivery: Delivery,
        transport: Transport,
        held: HoldReason | None = None,
        slot_at: float | None = None,
    ) -> AttemptResult:
        """Make one attempt and log it; raise a DeliveryError, or HubUnavailable if the
        hub's database failed before anything was sent (or, if it refused a value, a
        non-retryable error of the hub's), or DeliveryHeld if it must wait (``held``: the
        hold the workflow is in, so that a repeat is not counted again and a release is
        paced; ``slot_at``: the rate slot a rate hold kept)."""
        log = attempt_log(
            delivery,
            workflow_id=activity.info().workflow_id or "",
            method=transport.method(delivery),
            attempt=delivery.first_attempt,
        )
        try:
            # A busy or recovering database must not hold the attempt past its activity's
            # timeout (Temporal would start another while this one might still send).
            async with asyncio.timeout(HUB_BUDGET):
                service, delivery, permit = await self._ready(delivery, log, held, slot_at)
                log.status = LogStatus.SENDING
                log_id, log.attempt = await self._store.log.begin(
                    log, workflow_started=delivery.workflow_started
                )
        except UNAVAILABLE_ERRORS as err:
            self._metrics.wait(delivery.service)
            raise hub_unavailable(delivery, err) from None
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, StoreError) as err:
            # The hub's own, and no retry can change it: the workflow dead-letters it as such.
            self._count(delivery, "unsendable")
            raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from err
        # From here on the request may leave: nothing may raise HubUnavailable any more, or
        # the retry would send it again.
        try:
            call = transport.prepare(delivery, service, self._box.credentials(service), log.attempt)
        except (ValueError, SecretKeyError) as err:
            log.target = getattr(err, "target", None)
            unsendable = Sent(healthy=True, error=str(err), retryable=False)
            self._count(delivery, "unsendable")
            return await self._finish(log_id, log, service, None, unsendable)
        log.target = call.target
        started = time.perf_counter()
        sent = await _send(call)
        seconds = time.perf_counter() - started
        log.latency_ms = round(seconds * 1000, 2)
        self._count(delivery, status_class(sent.status_code, sent.error is None), seconds)
        if sent.error is None:
            self._metrics.delivery(delivery.service, delivery.service_type.value, "delivered")
        return await self._finish(log_id, log, service, permit, sent)

    def _count(self, delivery: Delivery, status: str, seconds: float | None = None) -> None:
        self._metrics.attempt(delivery.service, delivery.service_type.value, status, seconds)

    async def _ready(
        self, delivery: Delivery, log: LogEntryIn, held: HoldReason | None, slot_at: float | None
    ) -> tuple[Service, Delivery, Permit]:
        """The service, the delivery with its payload, and the breaker's leave to call; or
        a hold: paused, circuit open, throttled, rate spent (checked in that order)."""
        service = await self._index.service(delivery.service_id)
        if service is None:
            message = f"service {delivery.service!r} is disabled or was deleted"
            raise await self._refuse(delivery, log, message, "unsendable", retryable=False)
        # The index hears of a pause within a NOTIFY; a resume is confirmed at the source,
        # since the wake that follows it may arrive first.
        if service.paused_at is not None:
            service = await self._store.services.get(service.name)
            if service.paused_at is not None:
                raise self._hold(service, HoldReason.PAUSED, 0.0, held)
        if delivery.payload_ref is not None:
            payload = await self._store.claims.get(delivery.payload_ref)
            delivery = delivery.model_copy(update={"payload": payload})
        try:
            permit = await self._breaker.admit(service)
        except CircuitOpenError as err:
            raise self._hold(service, HoldReason.CIRCUIT_OPEN, err.retry_in, held) from None
        except ThrottledError as err:
            raise self._hold(service, HoldReason.THROTTLED, err.retry_in, held) from None
        if permit.probe_owner is None:  # the probe goes at once: holding it would wedge it
            await self._pacer.take(service, held, slot_at)
        return service, delivery, permit

    def _hold(
        self, service: Service, reason: HoldReason, seconds: float, before: HoldReason | None
    ) -> ApplicationError:
        """Count a hold (once, not at each re-check of the same one); its error to raise."""
        if reason is not before:
            self._metrics.hold(service.name, reason.value)
        return held_error(reason, seconds, service)

    async def _refuse(
        self,
        delivery: Delivery,
        log: LogEntryIn,
        message: str,
        status: str,
        *,
        retryable: bool,
        delay: timedelta | None = None,
        kind: str | None = None,
    ) -> DeliveryError:
        """Log (and count as ``status``) an attempt that never reached the service; return
        its error to raise."""
        log.error = message
        _, attempt = await self._store.log.begin(log, workflow_started=delivery.workflow_started)
        log.attempt = attempt
        self._count(delivery, status)
        _warn(log, retryable)
        return delivery_error(message, attempt, retryable=retryable, delay=delay, kind=kind)

    async def _finish(
        self, log_id: int, log: LogEntryIn, service: Service, permit: Permit | None, sent: Sent
    ) -> AttemptResult:
        """Write the attempt's outcome and feed the breaker; raise its error if it failed.

        The request went out, so nothing here may raise HubUnavailable (the retry would send
        it again): if the database refuses the write, the workflow is handed it to write.
        """
        attempt = log.attempt or 0
        log.status_code, log.response_excerpt = sent.status_code, sent.excerpt
        log.status = LogStatus.OK if sent.error is None else LogStatus.FAILED
        log.error = sent.error
        if sent.error is not None:
            _warn(log, sent.retryable)
        throttle = None
        if sent.status_code == 429 and sent.retry_after is not None:
            throttle = sent.retry_after.total_seconds()  # slows every delivery to the service
        unlogged = await self._record(
            log_id, log, service, permit, healthy=sent.healthy, throttle=throttle
        )
        if sent.error is not None:
            raise delivery_error(
                sent.error,
                attempt,
                retryable=sent.retryable,
                delay=sent.retry_after,
                unlogged=unlogged,
            )
        return AttemptResult(
            attempt=attempt,
            status_code=sent.status_code,
            latency_ms=log.latency_ms or 0.0,
            unlogged=unlogged,
        )

    async def _record(
        self,
        log_id: int,
        log: LogEntryIn,
        service: Service,
        permit: Permit | None,
        *,
        healthy: bool,
        throttle: float | None = None,
    ) -> LogUpdate | None:
        """The outcome write (with the breaker's, when the call was made under a permit),
        tried a few times within HUB_BUDGET; the write itself if it never went through."""
        try:
            async with asyncio.timeout(HUB_BUDGET):
                for pause in FINISH_RETRIES:
                    try:
                        if permit is None:
                            await self._store.log.finish(log_id, log)
                        else:
                            reading = await self._breaker.record(
                                service,
                                permit,
                                healthy=healthy,
                                log_id=log_id,
                                log=log,
                                throttle=throttle,
                            )
                            closed = reading is not None and reading.state is CircuitState.CLOSED
                            if permit.probe_owner is not None and healthy and closed:
                                self._waker.wake(service.name)
                        return None
                    except Exception:
                        await asyncio.sleep(pause)
        except TimeoutError:
            pass
        activity.logger.warning(
            "could not log attempt %s of %s: the workflow will", log.attempt, log.delivery_id
        )
        return LogUpdate(log_id=log_id, entry=log)


async def _send(call: Call) -> Sent:
    """The call's outcome; an error the transport did not expect is a failed attempt too
    (the request may have left), never the hub's own."""
    try:
        return await call.send()
    except Exception as err:
        activity.logger.exception("unexpected error while sending to %s", call.target)
        return Sent(healthy=False, error=f"{type(err).__name__}: {err}", retryable=True)


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
