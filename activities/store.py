"""Activities over the hub's own database: planning an event's deliveries, dead-lettering."""

from temporalio import activity

from hub import templating
from hub.circuit import CIRCUIT_OPEN
from hub.models import (
    DeadLetter,
    Delivery,
    DeliveryPlan,
    DispatchInput,
    LogEntryIn,
    LogStatus,
    ResponseQueue,
    RetrySettings,
    ServiceType,
)
from hub.rule_index import RuleIndex
from hub.store import Store


def delivery_id(event_id: str, rule_id: int) -> str:
    """Stable across retries, worker restarts and DLQ replays, so receivers can deduplicate."""
    return f"{event_id}/{rule_id}"


class StoreActivities:
    """Reads the cached rule index and writes the DLQ; one instance per worker."""

    def __init__(self, store: Store, index: RuleIndex) -> None:
        self._store = store
        self._index = index

    @activity.defn(name="plan_deliveries")
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
                    retry=RetrySettings(
                        max_attempts=service.max_attempts,
                        backoff=service.backoff,
                        timeout=service.timeout,
                    ),
                )
            )
        return DeliveryPlan(config_version=self._index.version, deliveries=deliveries)

    @activity.defn(name="list_response_queues")
    async def response_queues(self) -> list[ResponseQueue]:
        """Enabled AMQP services with a response queue (from the cached index)."""
        snapshot = await self._index.refresh()
        return [
            ResponseQueue(service_id=s.id, service=s.name, queue=s.response_queue)
            for s in sorted(snapshot.services.values(), key=lambda s: s.name)
            if s.type is ServiceType.AMQP and s.response_queue
        ]

    @activity.defn(name="dead_letter")
    async def dead_letter(self, dead: DeadLetter) -> int:
        """Compensation: record the failed delivery in the DLQ, once per workflow.

        When the last attempt was refused by the open circuit, the row keeps the last error
        that came from the network, which is what an operator needs to see.
        A delivery that never reached the network (its template failed) has no attempt row
        in the log, so it gets one here: every failure is findable in the log.
        """
        d = dead.delivery
        if dead.error_type == CIRCUIT_OPEN:
            last = await self._store.last_network_error(d.id, dead.workflow_id)
            if last:
                dead = dead.model_copy(update={"error": f"{last} (then: {dead.error})"})
        log = None
        if dead.attempts == 0:
            log = LogEntryIn(
                service=d.service,
                rule_id=d.rule_id,
                event_id=d.event_id,
                event_name=d.event_name,
                delivery_id=d.id,
                workflow_id=dead.workflow_id,
                method=d.method.value,
                target=d.endpoint,
                status=LogStatus.FAILED,
                attempt=0,
                error=dead.error,
            )
        return await self._store.add_dead_letter(dead, log)
