"""PostgreSQL: the only package with SQL, besides the numbered migration files."""

from hub.store.database import Listener, Store
from hub.store.errors import (
    UNAVAILABLE_ERRORS,
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
)
from hub.store.schema import migrate, migration_files

__all__ = [
    "UNAVAILABLE_ERRORS",
    "ConflictError",
    "Listener",
    "NotFoundError",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "migrate",
    "migration_files",
]
