"""A circuit breaker per backend URL.

``closed``: every request goes through; ``failures`` consecutive failures open
it. ``open``: nothing goes through until ``cooldown_s`` has passed; then the
next request is let through as the one probe (``half_open``) and every other
request is still refused. The probe's success closes the breaker, its failure
opens it for another cooldown.

Each admitted request gets a permit (the breaker's epoch at admission); an
outcome reported with a permit from an older epoch (a request admitted before
the breaker last changed state) is ignored, so a slow request from before the
trip can neither close an open breaker nor be mistaken for the probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe breaker state for one URL; ``clock`` is monotonic seconds."""

    __slots__ = (
        "_clock",
        "_epoch",
        "_failures",
        "_lock",
        "_opened_at",
        "_probe_out",
        "_state",
        "cooldown_s",
        "failure_threshold",
    )

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._epoch = 0
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cooldown passed still reads ``open``
        until a request takes the probe)."""
        return self._state

    def admit(self) -> int | None:
        """A permit for one request, or ``None`` if the breaker refuses it."""
        with self._lock:
            state = self._state
            if state is BreakerState.CLOSED:
                return self._epoch
            if state is BreakerState.OPEN:
                if self._clock() - self._opened_at < self.cooldown_s:
                    return None
                self._state = BreakerState.HALF_OPEN
                self._epoch += 1
                self._probe_out = True
                return self._epoch
            # Half-open: exactly one probe at a time.
            if self._probe_out:
                return None
            self._probe_out = True
            return self._epoch

    def success(self, permit: int) -> None:
        """The request admitted with ``permit`` succeeded."""
        with self._lock:
            if permit != self._epoch:
                return
            if self._state is BreakerState.HALF_OPEN:
                self._state = BreakerState.CLOSED
                self._epoch += 1
                self._probe_out = False
            self._failures = 0

    def failure(self, permit: int) -> None:
        """The request admitted with ``permit`` failed."""
        with self._lock:
            if permit != self._epoch:
                return
            if self._state is BreakerState.HALF_OPEN:
                self._trip()
                return
            if self._state is BreakerState.CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._trip()

    def abandon(self, permit: int) -> None:
        """The request ended without a verdict (cancelled); a probe slot is given back."""
        with self._lock:
            if permit == self._epoch and self._state is BreakerState.HALF_OPEN:
                self._probe_out = False

    def _trip(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._epoch += 1
        self._failures = 0
        self._probe_out = False
