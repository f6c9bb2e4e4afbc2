"""Activities over the hub's own database: planning an event's deliveries, dead-lettering."""

import json
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from hub.core import templating
from hub.core.claims import PAYLOAD_INLINE_MAX, PLAN_INLINE_BUDGET, claim_key
from hub.core.control import lane_id, order_value
from hub.core.models import (
    DeadLetter,
    Delivery,
    DeliveryPlan,
    DispatchInput,
    Event,
    HttpMethod,
    LogUpdate,
    PruneInput,
    PruneResult,
    ReplayInput,
    ReplayOutcome,
    RetrySettings,
    attempt_log,
    delivery_id,
)
from hub.runtime.breaker import CIRCUIT_OPEN
from hub.runtime.metrics import HubMetrics
from hub.runtime.rule_index import RuleIndex
from hub.store import UNAVAILABLE_ERRORS, Store, StoreError

P = ParamSpec("P")
T = TypeVar("T")

# Errors a retry cannot change: a value the database refuses, a row that is not there.
DETERMINISTIC = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValidationError)


def fails_fast(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Raise errors that no retry can change as non-retryable, so they end at once instead
    of using up the retry policy; everything else (a database that is down) is retried."""

    @wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (*DETERMINISTIC, StoreError) as err:
            raise ApplicationError(str(err), type=type(err).__name__, non_retryable=True) from err
        except UNAVAILABLE_ERRORS as err:
            # Expected during an outage: one line per retry, not a traceback.
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            activity.logger.warning(
                "%s waits: the database is unavailable (%s)", method.__name__, reason
            )
            raise ApplicationError(
                f"the hub's database is unavailable ({reason})",
                type="HubUnavailable",
                category=ApplicationErrorCategory.BENIGN,
            ) from None

    return run


class StoreActivities:
    """Plans deliveries from the cached rule index, writes the DLQ, prunes the log."""

    def __init__(
        self, store: Store, index: RuleIndex, *, max_payload_bytes: int, metrics: HubMetrics
    ) -> None:
        self._store = store
        self._index = index
        self._max_payload_bytes = max_payload_bytes
        self._metrics = metrics

    @activity.defn(name="plan_deliveries")
    @fails_fast
    async def plan(self, dispatch: DispatchInput) -> DeliveryPlan:
        """Match the event against the rules and render each payload.

        Runs as a local activity: it reads memory, and reloads the index only when the
        emitter saw a newer configuration than this worker holds. A payload over
        HUB_MAX_PAYLOAD_BYTES is a template error (dead-lettered, never sent); large ones are
        claim-checked, so the plan (and the history) stays small whatever the event's size.
        """
        targets = await self._index.match(dispatch.event.name, dispatch.config_version)
        event = await self._full_event(dispatch)
        deliveries = []
        inline = 0
        for target in targets:
            rule, service = target.rule, target.service
            payload, ref, error = None, None, None
            try:
                payload = templating.render(rule.template, event, max_bytes=self._max_payload_bytes)
            except templating.TemplateError as err:
                error = f"rule {rule.id}: {err}"
            did = delivery_id(event.id, rule.id)
            size = len(payload.encode()) if payload is not None else 0
            if payload is not None and (
                size > PAYLOAD_INLINE_MAX or inline + size > PLAN_INLINE_BUDGET
            ):
                ref = claim_key("payload", did, payload)
                await self._store.claims.put(ref, payload)
                payload, size = None, 0
            inline += size
            deliveries.append(
                Delivery(
                    id=did,
                    event_id=event.id,
                    event_name=event.name,
                    rule_id=rule.id,
                    service_id=service.id,
                    service=service.name,
                    service_type=service.type,
                    method=rule.method,
                    endpoint=rule.endpoint,
                    payload=payload,
                    payload_ref=ref,
                    template_error=error,
                    retry=RetrySettings.of(service),
                    priority=rule.priority,
                    weight=service.weight,
                    lane=_lane(rule.order_key, service.name, event),
                )
            )
        return DeliveryPlan(config_version=self._index.version, deliveries=deliveries)

    async def _full_event(self, dispatch: DispatchInput) -> Event:
        """The event with its data, fetched from its claim-check when it has one."""
        if dispatch.data_ref is None:
            return dispatch.event
        data = await self._store.claims.get(dispatch.data_ref)
        return dispatch.event.model_copy(update={"data": json.loads(data)})

    @activity.defn(name="record_attempt")
    @fails_fast
    async def record_attempt(self, update: LogUpdate) -> None:
        """Write an attempt's outcome that its activity could not (the database blipped)."""
        await self._store.log.finish(update.log_id, update.entry)

    @activity.defn(name="dead_letter")
    @fails_fast
    async def dead_letter(self, dead: DeadLetter) -> int:
        """Compensation: record the failed delivery in the DLQ, once per workflow.

        A delivery that never reached the network (its template failed) has no attempt row
        in the log, so it gets one here: every failure is findable in the log. Counted
        (DLQ write, delivery dead_lettered) only when this call wrote the row, so a retried
        activity counts once.
        """
        d = dead.delivery
        error = await self._real_error(d.id, dead.workflow_id, dead.error, dead.error_type)
        dead = dead.model_copy(update={"error": error})
        log = None
        if dead.attempts == 0:
            log = attempt_log(d, workflow_id=dead.workflow_id, method=d.method.value, attempt=0)
            log.error = dead.error
        dlq_id, written = await self._store.dlq.add(dead, log)
        if written:
            self._metrics.dlq_written(d.service)
            self._metrics.delivery(d.service, d.service_type.value, "dead_lettered")
        return dlq_id

    @activity.defn(name="replay_delivery")
    @fails_fast
    async def replay_delivery(self, replay: ReplayInput) -> Delivery:
        """The stored delivery of a DLQ row, to send again exactly as it was rendered.

        The service's current address, credentials and retry settings apply; the payload,
        method, endpoint and delivery id (the Idempotency-Key) are the stored ones.
        """
        entry = await self._store.dlq.get(replay.dlq_id)
        if entry.payload is None:
            raise ApplicationError(
                "nothing to replay: the template never rendered; fix the rule and emit again",
                non_retryable=True,
            )
        snapshot = await self._index.refresh()
        service = next((s for s in snapshot.services.values() if s.name == entry.service), None)
        if service is None:
            raise ApplicationError(
                f"service {entry.service!r} is disabled or was deleted", non_retryable=True
            )
        payload, ref = entry.payload, None
        if len(payload.encode()) > PAYLOAD_INLINE_MAX:
            ref = claim_key("payload", entry.delivery_id, payload)
            await self._store.claims.put(ref, payload)
        return Delivery(
            id=entry.delivery_id,
            event_id=entry.event_id,
            event_name=entry.event_name,
            rule_id=entry.rule_id or 0,
            service_id=service.id,
            service=service.name,
            service_type=service.type,
            method=HttpMethod(entry.method),
            endpoint=entry.endpoint,
            payload=None if ref else payload,
            payload_ref=ref,
            retry=RetrySettings.of(service),
        )

    @activity.defn(name="finish_replay")
    @fails_fast
    async def finish_replay(self, outcome: ReplayOutcome) -> None:
        """Resolve the DLQ row if the replay delivered, else record the replay's error."""
        if outcome.error is not None:
            error = await self._real_error(
                outcome.delivery_id or "", outcome.workflow_id, outcome.error, outcome.error_type
            )
            outcome = outcome.model_copy(update={"error": error})
        service = await self._store.dlq.finish_replay(outcome)
        if service is not None:
            self._metrics.dlq_replayed(service, outcome.delivered)

    async def _real_error(
        self, delivery_id: str, workflow_id: str, error: str, error_type: str | None
    ) -> str:
        """The error to keep: when the circuit refused the last attempt, the last error that
        came from the network, which is what an operator needs to see."""
        if error_type != CIRCUIT_OPEN:
            return error
        last = await self._store.log.last_network_error(delivery_id, workflow_id)
        return f"{last} (then: {error})" if last else error

    @activity.defn(name="prune_log")
    @fails_fast
    async def prune_log(self, prune: PruneInput) -> PruneResult:
        """The delivery log's upkeep: make its day partitions ahead of time (moving rows out
        of the default partition), drop the days past the retention, delete old claims."""
        days = prune.retention_days
        made, busy = await self._store.log.ensure_partitions()
        dropped, busy_drops = await self._store.log.drop_partitions(days)
        claims = await self._store.claims.prune(days)
        result = PruneResult(
            made=made, dropped=dropped, busy=busy + busy_drops, claims_removed=claims
        )
        if made:
            activity.logger.info("made delivery-log partitions %s", ", ".join(made))
        if dropped:
            activity.logger.info(
                "dropped delivery-log partitions past %d days: %s", days, ", ".join(dropped)
            )
        if result.busy:
            activity.logger.warning(
                "delivery-log partitions %s were busy: the next run handles them",
                ", ".join(result.busy),
            )
        return result


def _lane(order_key: str | None, service: str, event: Event) -> str | None:
    """The ordered lane of a delivery whose rule has an order key (hub.core.control)."""
    if order_key is None:
        return None
    return lane_id(service, order_value(order_key, event.model_dump(mode="json")))
