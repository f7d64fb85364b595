"""Retry policy, circuit breaker and the fallback plan, with injected time."""

from __future__ import annotations

import pytest
from tenacity import Retrying

from vibesdk import (
    BackendConnectError,
    BackendStatusError,
    BackendTimeoutError,
    CircuitOpenError,
    FallbackPolicy,
    MalformedResponseError,
    StreamInterruptedError,
)
from vibesdk._flags.evaluation import CompiledDocument
from vibesdk._resilience import (
    BreakerState,
    CircuitBreaker,
    fallback_reason,
    is_retryable,
    plan,
    retry_strategy,
)
from vibesdk.testing import make_document, make_flag


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    """A success resets the count; N consecutive failures open it and it refuses."""
    clock = FakeClock()
    b = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        p = b.admit()
        assert p is not None
        b.failure(p)
    p = b.admit()
    assert p is not None
    b.success(p)
    for _ in range(3):
        p = b.admit()
        assert p is not None
        b.failure(p)
    assert b.state is BreakerState.OPEN
    assert b.admit() is None


def test_breaker_lets_exactly_one_probe_through_after_cooldown() -> None:
    """After cooldown one request probes; others are refused; success closes it."""
    clock = FakeClock()
    b = CircuitBreaker(1, 10.0, clock=clock)
    p = b.admit()
    assert p is not None
    b.failure(p)
    clock.now += 9.9
    assert b.admit() is None
    clock.now += 0.1
    probe = b.admit()
    assert probe is not None
    assert b.state is BreakerState.HALF_OPEN
    assert b.admit() is None
    assert b.admit() is None
    b.success(probe)
    assert b.state is BreakerState.CLOSED
    assert b.admit() is not None


def test_failed_probe_reopens_for_another_cooldown() -> None:
    """A probe that fails opens the breaker again from that moment."""
    clock = FakeClock()
    b = CircuitBreaker(1, 10.0, clock=clock)
    b.failure(b.admit() or 0)
    clock.now += 10
    probe = b.admit()
    assert probe is not None
    clock.now += 5
    b.failure(probe)
    assert b.state is BreakerState.OPEN
    clock.now += 9
    assert b.admit() is None
    clock.now += 1
    assert b.admit() is not None


def test_outcomes_from_before_a_state_change_are_ignored() -> None:
    """A slow request admitted while closed cannot close an open breaker or pass as the probe."""
    clock = FakeClock()
    b = CircuitBreaker(1, 10.0, clock=clock)
    slow = b.admit()
    assert slow is not None
    b.failure(b.admit() or 0)
    b.success(slow)
    assert b.state is BreakerState.OPEN
    clock.now += 10
    probe = b.admit()
    assert probe is not None
    b.success(slow)
    assert b.state is BreakerState.HALF_OPEN
    b.failure(probe)
    assert b.state is BreakerState.OPEN


def test_abandoned_probe_gives_the_probe_slot_back() -> None:
    """A cancelled probe lets the next request probe instead of wedging half-open."""
    clock = FakeClock()
    b = CircuitBreaker(1, 1.0, clock=clock)
    b.failure(b.admit() or 0)
    clock.now += 1
    probe = b.admit()
    assert probe is not None
    b.abandon(probe)
    assert b.admit() is not None


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (BackendConnectError("x"), True),
        (BackendTimeoutError("x", phase="first_token"), True),
        (BackendStatusError("x", status_code=429), True),
        (BackendStatusError("x", status_code=503), True),
        (MalformedResponseError("x"), True),
        (StreamInterruptedError("x"), True),
        (BackendStatusError("x", status_code=400), False),
        (BackendStatusError("x", status_code=404), False),
        (CircuitOpenError("x"), False),
        (ValueError("bug"), False),
    ],
)
def test_what_is_retried(exc: BaseException, retry: bool) -> None:
    """Transient failures retry; 4xx other than 429, open circuits and non-backend errors do not."""
    assert is_retryable(exc) is retry


def test_retry_strategy_makes_one_plus_retries_attempts_with_injected_sleep() -> None:
    """stop_after_attempt(1+retries), backoff with jitter, reraise the last error."""
    policy = FallbackPolicy(retries=2, retry_backoff_s=0.5)
    slept: list[float] = []
    calls = 0

    def run() -> None:
        nonlocal calls
        for attempt in Retrying(sleep=slept.append, **retry_strategy(policy)):
            with attempt:
                calls += 1
                raise BackendConnectError("refused")

    with pytest.raises(BackendConnectError):
        run()
    assert calls == 3
    assert len(slept) == 2
    assert 0.5 <= slept[0] <= 1.0
    assert 1.0 <= slept[1] <= 1.5
    assert retry_strategy(policy) is retry_strategy(FallbackPolicy(retries=2, retry_backoff_s=0.5))


def test_non_retryable_error_is_raised_after_one_attempt() -> None:
    """A 400 is not retried."""
    calls = 0

    def run() -> None:
        nonlocal calls
        for attempt in Retrying(sleep=lambda s: None, **retry_strategy(FallbackPolicy(retries=3))):
            with attempt:
                calls += 1
                raise BackendStatusError("bad", status_code=400)

    with pytest.raises(BackendStatusError):
        run()
    assert calls == 1


def test_plan_tries_assigned_variant_then_default() -> None:
    """Canary users get (canary guarded, stable fallback); stable users get stable alone."""
    flag = make_flag(rollout_bps=10_000)
    doc = CompiledDocument(make_document(flag))
    steps = plan(doc.evaluate("vibethinker", "u1"), flag)
    assert [(s.variant, s.is_fallback, s.guarded) for s in steps] == [
        ("canary", False, True),
        ("stable", True, False),
    ]
    flag0 = make_flag(rollout_bps=0)
    steps = plan(CompiledDocument(make_document(flag0)).evaluate("vibethinker", "u1"), flag0)
    assert [(s.variant, s.is_fallback, s.guarded) for s in steps] == [("stable", False, False)]
    assert plan(doc.evaluate("nope", "u1"), None) == ()


def test_fallback_reason_is_the_error_kind() -> None:
    """The fallback reason is BackendError.kind (timeout_first_token, http_503, ...)."""
    assert fallback_reason(BackendTimeoutError("x", phase="first_token")) == "timeout_first_token"
    assert fallback_reason(BackendStatusError("x", status_code=503)) == "http_503"
    assert fallback_reason(KeyError("k")) == "KeyError"
