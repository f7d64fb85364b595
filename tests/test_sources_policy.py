"""Poll jitter and reconnect backoff: pure functions of the attempt and a seeded RNG."""

from __future__ import annotations

import random

from vibesdk._sources.policy import RECONNECT_CAP_S, poll_delay, reconnect_delay


def test_poll_delay_stays_within_ten_percent_and_spreads() -> None:
    """Poll delays are interval ± 10%, and not all the same."""
    rng = random.Random(1)
    delays = [poll_delay(30.0, rng) for _ in range(1000)]
    assert min(delays) >= 27.0
    assert max(delays) <= 33.0
    assert max(delays) - min(delays) > 5.0


def test_reconnect_delay_is_full_jitter_under_an_exponential_ceiling() -> None:
    """Attempt n waits uniformly in [0, min(cap, base * 2**n)]."""
    rng = random.Random(2)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (5, 30.0), (200, RECONNECT_CAP_S)]:
        delays = [reconnect_delay(attempt, rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8
        assert min(delays) < ceiling * 0.2


def test_reconnect_delay_follows_the_servers_retry_base() -> None:
    """A server-given base (retry: 250) scales the backoff."""
    rng = random.Random(3)
    assert all(reconnect_delay(2, rng, base_s=0.25) <= 1.0 for _ in range(100))
