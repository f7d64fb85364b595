"""The pure fallback decision: which variants to try, in order, and why one was left.

A call tries the assigned variant; if that fails (after its retries) it tries
the flag's default variant (``stable``). Only when that fails too does the
caller get :class:`~vibesdk.AllBackendsFailedError`. A stream falls back only
while no token has reached the caller.
"""

from __future__ import annotations

from typing import NamedTuple

from vibesdk._errors import BackendError, BackendStatusError, CircuitOpenError
from vibesdk._flags.document import Flag, Variant
from vibesdk._flags.evaluation import Assignment

__all__ = ["Step", "fallback_reason", "is_retryable", "plan"]


class Step(NamedTuple):
    """One variant to try. ``guarded``: its URLs are behind circuit breakers."""

    variant: str
    config: Variant
    is_fallback: bool
    guarded: bool


def plan(assignment: Assignment, flag: Flag | None) -> tuple[Step, ...]:
    """The variants to try for ``assignment``, in order (empty: nothing to call).

    The assigned variant first; then the flag's default variant if that is a
    different one. Breakers guard every variant except the default: it is the
    last resort, so it is always tried.
    """
    config = assignment.config
    if config is None:
        return ()
    if flag is None or assignment.variant == flag.default_variant:
        return (Step(assignment.variant, config, False, False),)
    default = flag.variants.get(flag.default_variant)
    first = Step(assignment.variant, config, False, True)
    if default is None:
        return (first,)
    return (first, Step(flag.default_variant, default, True, False))


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt at the same variant may help.

    Connection errors, timeouts, HTTP 429 and 5xx, malformed or empty answers
    and cut streams are retried. Other 4xx (the request itself is wrong for
    that backend) and an open circuit are not: they go straight to fallback.
    """
    if not isinstance(exc, BackendError) or isinstance(exc, CircuitOpenError):
        return False
    if isinstance(exc, BackendStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return not getattr(exc, "permanent", False)


def fallback_reason(exc: BaseException) -> str:
    """The short, stable label of a failure (``BackendError.kind``), for spans and results."""
    if isinstance(exc, BackendError):
        return exc.kind
    return type(exc).__name__
