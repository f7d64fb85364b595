"""PostgreSQL back end (psycopg 3), for several server replicas on one database.

Writers of one environment are serialized by an advisory transaction lock.
Every new version sends ``NOTIFY vibesdk_changes, '<schema> <env> <version>'``
inside its transaction, so PostgreSQL delivers it only on commit; each replica
runs a :class:`ChangeListener` thread that LISTENs and hands the new version to
its own SSE subscribers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any

from ._sql import SqlStore, Tx

__all__ = ["APPLICATION_NAME", "CHANNEL", "ChangeListener", "PostgresStore"]

CHANNEL = "vibesdk_changes"
# Shows in pg_stat_activity, so a DBA can tell the server's connections apart.
APPLICATION_NAME = "vibe-server"
log = logging.getLogger("vibesdk_server")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "a postgresql:// database needs psycopg: pip install 'vibesdk-server[postgres]'"
        ) from exc
    return psycopg


class PostgresStore(SqlStore):
    """Storage in PostgreSQL; ``url`` is a libpq URL (``postgresql://user@host:port/db``)."""

    placeholder = "%s"
    id_column = "BIGSERIAL PRIMARY KEY"
    _contains_sql = "strpos({0}, ?) > 0"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._pg = _psycopg()
        self._schema: str | None = None
        # An application_name in the URL wins over ours.
        named = "application_name" in self._pg.conninfo.conninfo_to_dict(url)
        self._app_name = {} if named else {"application_name": APPLICATION_NAME}

    def _connect(self) -> Any:
        return self._pg.connect(self.url, autocommit=True, **self._app_name)

    def _begin(self, conn: Any, *, write: bool) -> None:
        conn.execute("BEGIN")

    def _lock(self, tx: Tx, name: str) -> None:
        tx.run("SELECT pg_advisory_xact_lock(?)", (zlib.crc32(name.encode()),))

    def _notify(self, tx: Tx, environment: str, version: int) -> None:
        tx.run("SELECT pg_notify(?, ?)", (CHANNEL, f"{self.schema} {environment} {version}"))

    def _is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._pg.errors.UniqueViolation)

    def _is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, self._pg.OperationalError)

    @property
    def schema(self) -> str:
        """The schema this store writes to (from the URL's search_path; usually ``public``)."""
        if self._schema is None:
            with self._tx() as tx:
                self._schema = str(tx.one("SELECT current_schema()")[0])
        return self._schema

    def describe(self) -> str:
        return "postgresql"


class ChangeListener:
    """A daemon thread that LISTENs for committed versions and calls ``on_change(env, version)``.

    It reconnects after a lost connection (waiting ``retry_s``) and then calls
    ``on_reconnect()`` so the replica can catch up on anything it missed.
    """

    def __init__(
        self,
        store: PostgresStore,
        on_change: Callable[[str, int], None],
        on_reconnect: Callable[[], None],
        *,
        retry_s: float = 1.0,
    ) -> None:
        self._store = store
        self._on_change = on_change
        self._on_reconnect = on_reconnect
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._conn: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vibesdk-pg-listen", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        schema = self._store.schema
        first = True
        while not self._stop.is_set():
            try:
                with self._store._pg.connect(
                    self._store.url, autocommit=True, **self._store._app_name
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        self._on_reconnect()
                    first = False
                    self._ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._handle(schema, note.payload)
            except Exception:
                log.warning("lost the PostgreSQL LISTEN connection; reconnecting", exc_info=True)
                self._ready.set()
                self._stop.wait(self._retry_s)

    def _handle(self, schema: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            note_schema, env, version = payload.split(" ")
            if note_schema == schema:
                self._on_change(env, int(version))
