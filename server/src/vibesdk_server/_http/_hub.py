"""In-process fan-out of new document versions to SSE subscribers.

Each subscriber owns a bounded :class:`asyncio.Queue`; a publish puts the same
pre-serialized SSE event into every queue without awaiting, so one slow client
never delays the others. A subscriber whose queue is full is disconnected
(it reconnects with ``Last-Event-ID`` and catches up at once) rather than
buffering without bound. Everything here runs on the event loop; worker
threads hand versions in through :meth:`Hub.publish_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import anyio.to_thread

from vibesdk_server._storage import Published

__all__ = ["Hub", "Subscriber", "sse_event"]

log = logging.getLogger("vibesdk_server")


def sse_event(published: Published) -> bytes:
    """The SSE frame of one version: id, event ``flags``, the document on one line."""
    return (f"id: {published.version}\nevent: flags\ndata: {published.document_json}\n\n").encode()


class Subscriber:
    """One SSE connection's mailbox; ``None`` in the queue means "close the stream"."""

    def __init__(self, environment: str, size: int) -> None:
        self.environment = environment
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def offer(self, item: tuple[int, bytes] | None) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow: empty the mailbox and leave only the close signal.
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    """Latest version per environment plus the subscribers to tell about new ones."""

    def __init__(self, load: Callable[[str], Published], *, queue_size: int = 16) -> None:
        self._load = load
        self._queue_size = queue_size
        self._latest: dict[str, Published] = {}
        self._events: dict[str, bytes] = {}
        self._subs: dict[str, set[Subscriber]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.dropped_subscribers = 0

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def known_environments(self) -> list[str]:
        return list(self._latest)

    def latest_version(self, environment: str) -> int | None:
        p = self._latest.get(environment)
        return None if p is None else p.version

    def publish_threadsafe(self, published: Published) -> None:
        """Hand a committed version to the event loop (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(self.publish, published)

    def publish(self, published: Published) -> None:
        """Record ``published`` and queue it for every subscriber; older versions are ignored."""
        env = published.environment
        have = self._latest.get(env)
        if have is not None and have.version >= published.version:
            return
        event = sse_event(published)
        self._latest[env] = published
        self._events[env] = event
        for sub in list(self._subs.get(env, ())):
            sub.offer((published.version, event))
            if sub.dropped:
                self.dropped_subscribers += 1
                self._subs[env].discard(sub)
                log.warning("disconnected a slow SSE subscriber of %s", env)

    def peek(self, environment: str) -> Published | None:
        """The newest version already in memory (no loading)."""
        return self._latest.get(environment)

    async def current(self, environment: str) -> tuple[Published, bytes]:
        """The newest known version of ``environment`` and its SSE frame (loads it once)."""
        if environment not in self._latest:
            published = await anyio.to_thread.run_sync(self._load, environment)
            self.publish(published)
        return self._latest[environment], self._events[environment]

    def subscribe(self, environment: str) -> Subscriber:
        sub = Subscriber(environment, self._queue_size)
        self._subs.setdefault(environment, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.get(sub.environment, set()).discard(sub)

    def close(self) -> None:
        """Ask every open stream to end (server shutdown)."""
        for subs in self._subs.values():
            for sub in list(subs):
                sub.offer(None)
        self._subs.clear()
