"""Running the hub's own bookkeeping activities (planning, the DLQ, replays) from a workflow.

Their retries outlast a database restart (about 20 minutes, every 5 seconds at most, so work
resumes within seconds of the database coming back), and no more: past that the workflow
says so in its history instead of retrying for ever. Errors that
cannot change with a retry (a value the database refuses, a row that does not exist) are
raised non-retryable by the activities themselves (activities/store.py), so they end at the
first attempt.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

A = TypeVar("A")
R = TypeVar("R")

STORE_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=250)


async def bookkeeping(
    activity: Callable[[Any, A], Awaitable[R]], arg: A, *, local: bool = False
) -> R:
    """Run one bookkeeping activity under the policy above; ``local`` inside the workflow
    task (for reads that the worker answers from memory)."""
    run = workflow.execute_local_activity_method if local else workflow.execute_activity_method
    result: R = await run(
        activity, arg, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
    )
    return result
