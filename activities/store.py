"""Activities over the hub's own database: planning an event's deliveries, dead-lettering."""

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import asyncpg
from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from hub.core import templating
from hub.core.models import (
    DeadLetter,
    Delivery,
    DeliveryPlan,
    DispatchInput,
    HttpMethod,
    ReplayInput,
    ReplayOutcome,
    RetrySettings,
    attempt_log,
    delivery_id,
)
from hub.runtime.breaker import CIRCUIT_OPEN
from hub.runtime.rule_index import RuleIndex
from hub.store import Store, StoreError

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

    return run


class StoreActivities:
    """Plans deliveries from the cached rule index, writes the DLQ, prunes the log."""

    def __init__(self, store: Store, index: RuleIndex) -> None:
        self._store = store
        self._index = index

    @activity.defn(name="plan_deliveries")
    @fails_fast
    async def plan(self, dispatch: DispatchInput) -> DeliveryPlan:
        """Match the event against the rules and render each payload.

        Runs as a local activity: it reads memory, and reloads the index only when the
        emitter saw a newer configuration than this worker holds.
        """
        event = dispatch.event
        targets = await self._index.match(event.name, dispatch.config_version)
        deliveries = []
        for target in targets:
            rule, service = target.rule, target.service
            payload, error = None, None
            try:
                payload = templating.render(rule.template, event)
            except templating.TemplateError as err:
                error = f"rule {rule.id}: {err}"
            deliveries.append(
                Delivery(
                    id=delivery_id(event.id, rule.id),
                    event_id=event.id,
                    event_name=event.name,
                    rule_id=rule.id,
                    service_id=service.id,
                    service=service.name,
                    service_type=service.type,
                    method=rule.method,
                    endpoint=rule.endpoint,
                    payload=payload,
                    template_error=error,
                    retry=RetrySettings.of(service),
                )
            )
        return DeliveryPlan(config_version=self._index.version, deliveries=deliveries)

    @activity.defn(name="dead_letter")
    @fails_fast
    async def dead_letter(self, dead: DeadLetter) -> int:
        """Compensation: record the failed delivery in the DLQ, once per workflow.

        A delivery that never reached the network (its template failed) has no attempt row
        in the log, so it gets one here: every failure is findable in the log.
        """
        d = dead.delivery
        error = await self._real_error(d.id, dead.workflow_id, dead.error, dead.error_type)
        dead = dead.model_copy(update={"error": error})
        log = None
        if dead.attempts == 0:
            log = attempt_log(d, workflow_id=dead.workflow_id, method=d.method.value, attempt=0)
            log.error = dead.error
        return await self._store.dlq.add(dead, log)

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
            payload=entry.payload,
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
        await self._store.dlq.finish_replay(outcome)

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
    async def prune_log(self, retention_days: int) -> int:
        """Delete delivery-log rows past the retention period; return how many."""
        removed = await self._store.log.prune(retention_days)
        if removed:
            activity.logger.info(
                "pruned %d delivery-log rows older than %d days", removed, retention_days
            )
        return removed
