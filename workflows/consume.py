"""ConsumeResponsesWorkflow: drain every AMQP response queue once (a schedule runs it)."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.responses import ResponseActivities
    from hub.core.models import (
        ConsumeInput,
        ConsumeRequest,
        ConsumeResult,
        ConsumeSummary,
        ResponseQueue,
    )

SCHEDULE_ID = "hub-consume-responses"
LIST_TIMEOUT = timedelta(seconds=30)
# Draining is bounded by max_messages; the heartbeat proves progress message by message.
CONSUME_TIMEOUT = timedelta(minutes=10)
CONSUME_HEARTBEAT = timedelta(seconds=30)
# The next scheduled run comes within a minute: do not pile retries on top of it.
CONSUME_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))


@workflow.defn
class ConsumeResponsesWorkflow:
    """One pass over the response queues; a failing broker does not stop the others."""

    @workflow.run
    async def run(self, consume: ConsumeInput) -> ConsumeSummary:
        sources = await workflow.execute_local_activity_method(
            ResponseActivities.response_queues,
            start_to_close_timeout=LIST_TIMEOUT,
            retry_policy=CONSUME_RETRY,
        )
        results = await asyncio.gather(
            *(self._drain(source, consume.max_messages) for source in sources)
        )
        return ConsumeSummary(results=list(results))

    async def _drain(self, source: ResponseQueue, max_messages: int) -> ConsumeResult:
        try:
            return await workflow.execute_activity_method(
                ResponseActivities.consume,
                ConsumeRequest(source=source, max_messages=max_messages),
                start_to_close_timeout=CONSUME_TIMEOUT,
                heartbeat_timeout=CONSUME_HEARTBEAT,
                retry_policy=CONSUME_RETRY,
            )
        except ActivityError as err:
            cause = err.cause or err
            return ConsumeResult(service=source.service, queue=source.queue, error=str(cause))
