"""Temporal integration hub: events in, durable deliveries out."""

__version__ = "0.1.0"
