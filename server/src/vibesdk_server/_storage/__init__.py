"""Storage back ends behind one interface: SQLite (default) and PostgreSQL (replicas)."""

from __future__ import annotations

from pathlib import Path

from ._sql import Mutation, Published, SqlStore, Tx, rfc3339, utcnow
from ._sqlite import SqliteStore

__all__ = ["Mutation", "Published", "SqlStore", "Tx", "open_store", "rfc3339", "utcnow"]


def open_store(db: str | Path) -> SqlStore:
    """A store for ``db``: a ``postgresql://`` URL selects PostgreSQL, anything else SQLite.

    The schema is created if missing.
    """
    text = str(db)
    store: SqlStore
    if text.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresStore

        store = PostgresStore(text)
    else:
        store = SqliteStore(text)
    store.init_schema()
    return store
