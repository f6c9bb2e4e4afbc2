"""PostgreSQL: the only package with SQL, besides the numbered migration files."""

from hub.store.database import Listener, Store
from hub.store.errors import ConflictError, NotFoundError, StoreError
from hub.store.schema import migrate, migration_files

__all__ = [
    "ConflictError",
    "Listener",
    "NotFoundError",
    "Store",
    "StoreError",
    "migrate",
    "migration_files",
]
