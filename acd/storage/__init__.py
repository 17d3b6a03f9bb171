"""Storage: the repository (SQLite through aiosqlite by default, PostgreSQL through asyncpg by URL).

    store = await open_store(default_sqlite_url("data"))   # migrates to head
    contact, created = await store.create_contact(contact, idempotency_key="lead-42")

Only this package imports SQLAlchemy; it hands back and takes core objects.
"""

from acd.storage.store import Conflict, Refused, StorageError, Store, default_sqlite_url, open_store

__all__ = ["Conflict", "Refused", "StorageError", "Store", "default_sqlite_url", "open_store"]
