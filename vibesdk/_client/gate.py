"""At most as many requests as the connection pool has connections, the rest waiting here.

httpcore queues a request that finds every connection of the pool busy, and
each time a request enters or leaves the pool it scans every queued request
against every connection (httpcore 1.0.9). With a thousand calls in flight and
512 connections, that scan took most of the process's CPU, starved the event
loop, and made even the stable backend's calls miss their connect deadline
(see ``benchmarks/soak/README.md``). A client therefore lets at most
:data:`MAX_CONNECTIONS` of its requests into its pool at once; the others wait
for a free connection here, in arrival order, each no longer than its
attempt's deadline.

Under the gate, httpcore's bookkeeping still grows with the square of a pool's
connections (for every idle connection it counts all of them again, each time a
request enters or leaves): the client's transport splits its connections
between :data:`POOL_SHARDS` pools and sends each request to the least busy
(``vibesdk._watch``), which the gate keeps from being full.

A gate belongs to one connection pool: a client that replaces its pool (after
a fork, or in a new event loop) makes a new gate with it, and an attempt leaves
the gate it entered.
"""

from __future__ import annotations

import asyncio
import collections
import threading

import httpx

from vibesdk._watch import Watch

__all__ = ["LIMITS", "MAX_CONNECTIONS", "POOL_SHARDS", "AsyncGate", "Gate"]

#: Connections of a client's pool, and requests of the client in flight at once. Every one of
#: them may stay open between requests (httpx closes it after 5 s idle): a pool that kept fewer
#: than it uses would close and reopen connections all the time under load. The pool's own
#: bookkeeping costs connections x connections per request, hence not more.
MAX_CONNECTIONS = 256
LIMITS = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
#: The connections are split between this many pools of 32, each request going to the least
#: busy: httpcore's bookkeeping per request grows with the square of one pool's connections.
POOL_SHARDS = 8


def _left(watch: Watch) -> float | None:
    return None if watch.deadline is None else max(0.0, watch.deadline - watch.clock())


class AsyncGate:
    """A first-come, first-served gate of ``limit`` places for one event loop's requests."""

    def __init__(self, limit: int = MAX_CONNECTIONS) -> None:
        self.limit = limit
        self._free = limit
        self._waiting: collections.deque[asyncio.Future[bool]] = collections.deque()

    async def enter(self, watch: Watch) -> bool:
        """Take a place, waiting until ``watch``'s deadline at most; False if none came in time."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        loop = asyncio.get_running_loop()
        place: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(place)
        left = _left(watch)
        timer = None if left is None else loop.call_later(left, _expire, place)
        try:
            return await place
        except BaseException:
            # Cancelled. A place handed over just before is passed on, not lost.
            if place.done() and not place.cancelled() and place.result():
                self.leave()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def leave(self) -> None:
        """Give a place back: to the longest waiting request, if any."""
        waiting = self._waiting
        while waiting:
            place = waiting.popleft()
            if not place.done():
                place.set_result(True)
                return
        self._free += 1


def _expire(place: asyncio.Future[bool]) -> None:
    # Left in the queue as done: leave() skips it.
    if not place.done():
        place.set_result(False)


class Gate:
    """A gate of ``limit`` places for the requests of a client's threads."""

    def __init__(self, limit: int = MAX_CONNECTIONS) -> None:
        self.limit = limit
        self._places = threading.BoundedSemaphore(limit)

    def enter(self, watch: Watch) -> bool:
        """Take a place, waiting until ``watch``'s deadline at most; False if none came in time."""
        if self._places.acquire(blocking=False):
            return True
        return self._places.acquire(timeout=_left(watch))

    def leave(self) -> None:
        """Give a place back."""
        self._places.release()
