"""Surviving bad backends: retry policy, circuit breakers, the fallback decision.

All of it is pure or thread-safe state with injectable time; the clients drive it.
"""

from .breaker import BreakerState, CircuitBreaker
from .fallback import Step, fallback_reason, is_retryable, plan
from .retry import retry_strategy

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Step",
    "fallback_reason",
    "is_retryable",
    "plan",
    "retry_strategy",
]
