"""Starting while a server is still coming up: a worker started before (or during a restart
of) PostgreSQL or Temporal waits for it instead of exiting, for a bounded time.

Only "not there yet" is waited for: a refused connection, a server that says it is not ready.
A wrong password or an unknown namespace will not change with time and fails at once.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.service import RPCError, RPCStatusCode

from hub.store import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")

STARTUP_WAIT = 120.0
"""Seconds a starting process waits for its servers before it gives up."""
RETRY_EVERY = (0.5, 1.0, 2.0, 5.0)
TRANSIENT_RPC = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED}


def not_up_yet(err: BaseException) -> bool:
    """Whether the error says the server is not (yet, or no longer) reachable."""
    if isinstance(err, RPCError):
        return err.status in TRANSIENT_RPC
    if isinstance(err, RuntimeError) and str(err).startswith("Failed client connect"):
        return True  # the Temporal SDK's error for a frontend that is down or not ready
    return isinstance(err, UNAVAILABLE_ERRORS)


async def when_up(what: str, step: Callable[[], Awaitable[T]], wait: float = STARTUP_WAIT) -> T:
    """Run ``step``, again while ``what`` is not up, for at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    tries = 0
    while True:
        try:
            return await step()
        except Exception as err:
            if not not_up_yet(err) or time.monotonic() > deadline:
                raise
            pause = RETRY_EVERY[min(tries, len(RETRY_EVERY) - 1)]
            tries += 1
            if tries == 1:
                log.warning("waiting for %s (%s: %s)", what, type(err).__name__, err)
            await asyncio.sleep(pause)
