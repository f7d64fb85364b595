"""The retry policy, defined once as tenacity strategy objects.

The clients hand these to ``tenacity.Retrying`` (sync) or
``tenacity.AsyncRetrying`` (async) together with their own ``sleep``, so the
policy is the same in both and tests never wait on a real timer.

The clients make attempt 1 before they build ``Retrying`` (most calls need no
other) and hand a failure in as its attempt 1. Strategies that count attempts
or look at the outcome see exactly what they would otherwise; a time-based
``stop`` (``stop_after_delay``) would start its clock after attempt 1.
"""

from __future__ import annotations

from typing import Any

from tenacity import (
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_none,
    wait_random,
)

from vibesdk._flags.document import FallbackPolicy

from .fallback import is_retryable

__all__ = ["retry_strategy"]

_cache: dict[FallbackPolicy, dict[str, Any]] = {}


def retry_strategy(policy: FallbackPolicy) -> dict[str, Any]:
    """Keyword arguments for ``Retrying``/``AsyncRetrying`` under ``policy``.

    * stop after ``1 + retries`` attempts;
    * wait ``retry_backoff_s`` doubled per attempt, plus up to
      ``retry_backoff_s`` of random jitter (capped at 8x the backoff);
    * retry only errors :func:`~vibesdk._resilience.fallback.is_retryable`
      accepts; re-raise the last error unchanged when giving up.
    """
    found = _cache.get(policy)
    if found is not None:
        return found
    backoff = policy.retry_backoff_s
    wait = (
        wait_exponential(multiplier=backoff, max=backoff * 8) + wait_random(0, backoff)
        if backoff > 0
        else wait_none()
    )
    strategy: dict[str, Any] = {
        "stop": stop_after_attempt(1 + policy.retries),
        "wait": wait,
        "retry": retry_if_exception(is_retryable),
        "reraise": True,
    }
    if len(_cache) > 256:  # documents churn rarely; this only bounds a pathological case
        _cache.clear()
    _cache[policy] = strategy
    return strategy
