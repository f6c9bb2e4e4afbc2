"""Holding a delivery without using an attempt: the error that says so, the pace of a
service's slots (its rate, or the release rate after a pause or an open circuit), and
waking the held deliveries when a probe closes a circuit."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from hub.core.control import HoldReason, rate_per_second
from hub.core.models import Service
from hub.runtime.metrics import HubMetrics
from hub.store import Store

HELD = "DeliveryHeld"
"""The error type of a hold: details are the reason, the seconds to wait (0: until woken),
the service's max hold and, for a rate hold, the time (epoch) of the slot it keeps."""
HOLD_EXPIRED = "HoldExpired"
SLEEP_LIMIT = 1.0
"""A rate wait up to this many seconds is slept in the activity; a longer one is a hold
(Temporal's timers fire at about one-second resolution: a shorter one would come late)."""
RATE_LEAD = 1.0
"""A rate hold's timer ends this early; the next activity sleeps to its slot, so the lag of
a timer and a task does not bunch deliveries past the rate."""
SLOT_GRACE = 0.1
"""An activity that reaches its kept slot later than this gives it up and takes a new one:
sending late would crowd the slots after it."""
MISSED_SLOTS = 3
"""Slots a delivery may miss in a row (woken late) before it goes at the next anyway."""
DEFAULT_RELEASE_RATE = 20.0
Waker = Callable[[str], Awaitable[object]]
"""Wakes the held deliveries of a service (hub.engine.holds.wake_held on a client)."""
log = logging.getLogger(__name__)


def held_error(
    reason: HoldReason, seconds: float, service: Service, slot_at: float | None = None
) -> ApplicationError:
    """The error that tells the workflow to hold the delivery (no attempt used)."""
    return ApplicationError(
        f"held ({reason.value}) for {seconds:.1f}s" if seconds else f"held ({reason.value})",
        reason.value,
        seconds,
        service.max_hold,
        slot_at,
        type=HELD,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


class Pacer:
    """Slots under a service's rate, shared by every worker (GCRA in circuit_state)."""

    def __init__(self, store: Store, metrics: HubMetrics, release_rate: float) -> None:
        self._store = store
        self._metrics = metrics
        self._release_rate = release_rate

    async def take(self, service: Service, held: HoldReason | None, slot_at: float | None) -> None:
        """Take a slot under the service's rate, or under the release rate when the delivery
        leaves a pause or an open circuit; sleep a short wait, hold a longer one (the slot
        stays taken: the call after that hold sleeps to it and goes without another).

        A sleeper that wakes past its slot (a busy worker) gives the slot up and takes the
        next one, rather than crowd the deliveries after it.
        """
        release = held in (HoldReason.PAUSED, HoldReason.CIRCUIT_OPEN)
        if held is HoldReason.RATE_LIMITED and slot_at is not None:
            if await _on_time(min(slot_at, time.time() + 2 * RATE_LEAD)):
                return
            release = True  # its slot went by: a new one, at the rate it was paced by
        if service.rate is None and not release:
            return
        per_second = rate_per_second(service.rate) if service.rate else self._release_rate
        for _ in range(MISSED_SLOTS):
            wait = await self._store.circuits.reserve(service.id, 1.0 / per_second)
            if wait > SLEEP_LIMIT:
                self._metrics.hold(service.name, HoldReason.RATE_LIMITED.value)
                raise held_error(HoldReason.RATE_LIMITED, wait, service, time.time() + wait)
            if await _on_time(time.time() + wait):
                return


async def _on_time(slot_at: float) -> bool:
    """Sleep until the slot; whether it is still the slot's time on waking."""
    await asyncio.sleep(max(0.0, slot_at - time.time()))
    return time.time() - slot_at <= SLOT_GRACE


class BackgroundWaker:
    """Wakes held deliveries without holding up the activity that closed the circuit."""

    def __init__(self, wake: Waker | None) -> None:
        self._wake = wake
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self, service: str) -> None:
        """The probe closed the circuit: wake the deliveries it held, in the background."""
        if self._wake is None:
            return
        task = asyncio.create_task(self._waking(self._wake, service))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _waking(wake: Waker, service: str) -> None:
        try:
            await wake(service)
        except Exception:  # they still wake on their own timers
            log.warning("could not wake the held deliveries of %s", service, exc_info=True)
