"""Surviving ``fork``: gunicorn and uWSGI create the app's client, then fork workers.

Only the forking thread survives in a child; the parent's background threads,
locks they held and pooled connections are unusable there. Every live flag
source registers here; in each child, one ``os.register_at_fork`` hook tells
them to drop the parent's threads and connections (keeping the document) and
to start again lazily, on first use.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

__all__ = ["abandon", "track"]

logger = logging.getLogger("vibesdk.flags")


class _ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[_ForkAware] = weakref.WeakSet()
# Clients of the parent abandoned in a forked child: closing them could block
# on a lock a dead parent thread held, and collecting them would close sockets
# the parent still uses.
_abandoned: list[Any] = []


def track(source: _ForkAware) -> None:
    """Call ``source._after_fork_in_child()`` in every child forked while it is alive."""
    _live.add(source)


def abandon(client: Any) -> None:
    """In a forked child: keep the parent's HTTP ``client`` referenced and never close it."""
    _abandoned.append(client)


def _after_fork_in_child() -> None:
    for source in list(_live):
        try:
            source._after_fork_in_child()
        except Exception:
            logger.exception("vibesdk flags: resetting a flag source after fork failed")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
