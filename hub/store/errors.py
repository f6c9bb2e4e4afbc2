"""Errors the store raises, with messages fit for the operator."""


class StoreError(Exception):
    """An operation the database refused, with a message fit for the operator."""


class NotFoundError(StoreError):
    """The named row does not exist."""


class ConflictError(StoreError):
    """The change would break a uniqueness or reference constraint."""
