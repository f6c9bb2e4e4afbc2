"""Temporal activities: classes whose constructors receive the worker's shared clients."""

from activities.attempt import DeliveryAttempt
from activities.delivery import DeliveryActivities
from activities.dispatch import DispatchActivities
from activities.responses import ResponseActivities
from activities.store import StoreActivities

__all__ = [
    "DeliveryActivities",
    "DeliveryAttempt",
    "DispatchActivities",
    "ResponseActivities",
    "StoreActivities",
]
