"""Temporal activities: classes whose constructors receive the worker's shared clients."""

from activities.amqp import AmqpActivities
from activities.attempts import DeliveryAttempts
from activities.http import HttpActivities
from activities.store import StoreActivities

__all__ = ["AmqpActivities", "DeliveryAttempts", "HttpActivities", "StoreActivities"]
