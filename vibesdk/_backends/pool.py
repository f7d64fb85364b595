"""Choosing one of a backend's URLs: least outstanding requests, ties round-robin."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["BackendPool"]

T = TypeVar("T")


class BackendPool:
    """The URLs of one backend and how many requests each has in flight.

    :meth:`acquire` picks the URL with the fewest requests in flight; among
    equals it rotates, so an idle pool spreads requests round-robin. The
    caller must :meth:`release` every URL it acquired. Thread-safe; the
    counters are per process.
    """

    __slots__ = ("_index", "_lock", "_next", "_outstanding", "urls")

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("a backend needs at least one URL")
        self.urls = tuple(urls)
        self._index = {u: i for i, u in enumerate(self.urls)}
        self._outstanding = [0] * len(self.urls)
        self._next = 0
        self._lock = threading.Lock()

    def acquire(
        self, admit: Callable[[str], T | None] | None = None
    ) -> tuple[str, T | None] | None:
        """Take the least busy URL that ``admit`` lets through.

        ``admit(url)`` is asked in order of preference (fewest in flight
        first, ties in rotating order) until it returns something other than
        ``None`` (a circuit breaker's permit); that URL is counted as in
        flight and returned with the permit. ``None`` when no URL is admitted.
        Without ``admit`` the least busy URL is taken.
        """
        with self._lock:
            n = len(self.urls)
            start = self._next
            self._next = (start + 1) % n
            counts = self._outstanding
            if admit is None:
                best = start
                for k in range(1, n):
                    i = (start + k) % n
                    if counts[i] < counts[best]:
                        best = i
                counts[best] += 1
                return self.urls[best], None
            order = sorted(range(n), key=lambda i: (counts[i], (i - start) % n))
            for i in order:
                permit = admit(self.urls[i])
                if permit is not None:
                    counts[i] += 1
                    return self.urls[i], permit
            return None

    def release(self, url: str) -> None:
        """Count one request to ``url`` as finished."""
        i = self._index[url]
        with self._lock:
            if self._outstanding[i] > 0:
                self._outstanding[i] -= 1

    def outstanding(self) -> dict[str, int]:
        """Requests in flight per URL (a snapshot)."""
        with self._lock:
            return dict(zip(self.urls, self._outstanding, strict=True))
