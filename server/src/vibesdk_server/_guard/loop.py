"""The guard loop: every ``interval_s``, one look at each running release (see :mod:`.actions`).

Exactly one server looks. With SQLite there is only one server per database file. With
PostgreSQL the replicas compete for a session advisory lock (``pg_try_advisory_lock``) on a
connection of their own: the one that gets it leads and keeps it while that connection lives;
when the leader dies its connection closes, the lock is freed, and another replica takes it at
its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from typing import Any

import anyio.to_thread

from vibesdk_server._guard.actions import Clock, guard_release
from vibesdk_server._guard.sources import MetricsSource
from vibesdk_server._storage import SqlStore

__all__ = ["DEFAULT_GUARD_INTERVAL_S", "Guard", "leadership"]

DEFAULT_GUARD_INTERVAL_S = 5.0
log = logging.getLogger("vibesdk_server")


class _PostgresLeadership:
    """An advisory lock of its own per ``task`` (the guard, the evaluation scheduler), held on a
    dedicated connection: one replica leads each task."""

    def __init__(self, store: Any, task: str = "guard") -> None:
        self._store = store
        self._task = task
        self._conn: Any = None
        self._key = zlib.crc32(f"vibesdk-{task} {store.schema}".encode())

    def acquire(self) -> bool:
        """Whether this replica leads now (taking the lock if it is free)."""
        try:
            if self._conn is not None:
                self._conn.execute("SELECT 1")
                return True
            conn = self._store._pg.connect(
                self._store.url, autocommit=True, **self._store._app_name
            )
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()[0]
            if not got:
                conn.close()
                return False
            self._conn = conn
            log.info("%s: this replica leads the %s loop", self._task, self._task)
            return True
        except Exception:
            log.warning("%s: lost the leadership connection", self._task, exc_info=True)
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class _Alone:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def leadership(store: SqlStore, task: str) -> _PostgresLeadership | _Alone:
    """Who runs ``task``: with PostgreSQL, the replica holding ``task``'s advisory lock
    (``acquire()`` says whether this one does now); with SQLite, the single server, always."""
    if store.__class__.__name__ == "PostgresStore":
        return _PostgresLeadership(store, task)
    return _Alone()


class Guard:
    """Runs :func:`~.actions.guard_release` on every running release, on the leader only."""

    def __init__(
        self,
        store: SqlStore,
        *,
        interval_s: float = DEFAULT_GUARD_INTERVAL_S,
        clock: Clock = time.time,
        source: MetricsSource | None = None,
    ) -> None:
        self.store = store
        self.source = source  # where the figures come from; None: the store's own
        self.interval_s = interval_s
        self.clock = clock
        self._leadership = leadership(store, "guard")

    def tick(self) -> dict[int, str]:
        """One look at every running release if this server leads: ``{release id: action}``."""
        if not self._leadership.acquire():
            return {}
        done: dict[int, str] = {}
        for release in self.store.active_releases():
            try:
                done[release["id"]] = guard_release(
                    self.store, release, clock=self.clock, source=self.source
                )
            except Exception as exc:  # one release's trouble never stops the others
                name = type(exc).__name__
                log.warning(
                    "guard: release %s of %s/%s: %s: %s",
                    release["id"],
                    release["environment"],
                    release["flag_key"],
                    name,
                    getattr(exc, "detail", exc),
                )
                done[release["id"]] = f"error: {name}"
        return done

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await anyio.to_thread.run_sync(self.tick)
                except Exception:
                    log.warning("guard: a tick failed", exc_info=True)
        finally:
            self._leadership.release()
