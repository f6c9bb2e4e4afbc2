"""Temporal activities: classes whose constructors receive the worker's shared clients."""

from activities.http import HttpActivities
from activities.store import StoreActivities

__all__ = ["HttpActivities", "StoreActivities"]
