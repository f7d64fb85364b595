"""When to poll, when to reconnect, when to call a source stale: pure functions.

Randomness comes in as a ``random.Random`` so tests can pin it; nothing here
sleeps or reads a clock.
"""

from __future__ import annotations

import random

__all__ = [
    "POLL_JITTER",
    "RECONNECT_BASE_S",
    "RECONNECT_CAP_S",
    "STALE_AFTER_FAILURES",
    "STREAM_SILENCE_S",
    "poll_delay",
    "reconnect_delay",
]

POLL_JITTER = 0.10
"""Polls are spread by ±10% so that a fleet started together does not poll together."""

RECONNECT_BASE_S = 1.0
"""First reconnect delay ceiling when the server sent no ``retry:`` field."""

RECONNECT_CAP_S = 30.0
"""Reconnect delays never exceed this, however many attempts failed."""

STALE_AFTER_FAILURES = 3
"""Consecutive failed polls/connects (with no stream up) that turn READY into STALE."""

STREAM_SILENCE_S = 45.0
"""A stream silent this long (three missed 15 s heartbeats) is dead: reconnect."""


def poll_delay(interval_s: float, rng: random.Random) -> float:
    """Seconds until the next poll: ``interval_s`` ± 10%, uniformly."""
    return interval_s * (1.0 + rng.uniform(-POLL_JITTER, POLL_JITTER))


def reconnect_delay(
    attempt: int,
    rng: random.Random,
    *,
    base_s: float = RECONNECT_BASE_S,
    cap_s: float = RECONNECT_CAP_S,
) -> float:
    """Exponential backoff with full jitter before reconnect number ``attempt`` (0-based).

    Uniform in ``[0, min(cap_s, base_s * 2**attempt)]`` (AWS Architecture Blog,
    "Exponential Backoff and Jitter"): clients that lost the same server spread
    out instead of returning in lockstep.
    """
    ceiling = cap_s if attempt >= 63 else min(cap_s, base_s * (2.0**attempt))
    return rng.uniform(0.0, max(ceiling, 0.0))
