"""SQLite back end: one file, WAL journal, ``synchronous=FULL``.

With FULL, a commit returns only after the WAL is synced to disk, so a change
the API acknowledged survives ``kill -9`` and power loss. ``BEGIN IMMEDIATE``
takes the write lock up front, which serializes writers (one process).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ._sql import SqlStore, Tx

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    """Storage in one SQLite file (the default; one server process per file)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _begin(self, conn: Any, *, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _add_column(self, tx: Tx, table: str, column: str, kind: str) -> None:
        # SQLite has no ADD COLUMN IF NOT EXISTS.
        if not any(row[1] == column for row in tx.all(f"PRAGMA table_info({table})")):
            tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def describe(self) -> str:
        return f"sqlite:{self.path}"
