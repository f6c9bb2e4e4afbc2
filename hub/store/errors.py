"""Errors the store raises, with messages fit for the operator."""

import asyncio

import asyncpg


class StoreError(Exception):
    """An operation the database refused, with a message fit for the operator."""


class NotFoundError(StoreError):
    """The named row does not exist."""


class ConflictError(StoreError):
    """The change would break a uniqueness or reference constraint."""


class StoreUnavailable(Exception):
    """The database cannot be reached: worth a retry once it is back."""


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08, and a connection lost mid-query
    asyncpg.OperatorInterventionError,  # class 57: shutting down, cannot connect now
    asyncpg.InsufficientResourcesError,  # class 53: too many connections
    asyncpg.InterfaceError,  # the pool or connection is closed
)
"""Errors that say the database is down or restarting, not that a statement was wrong."""
