"""What a guarded release is, and how its measurements become a decision: pure, no I/O.

A release walks one flag's canary (its ``rollout_variant``) through rollout steps, by default
1 -> 5 -> 10 -> 25 -> 50 -> 100%. At every step the guard loop reads what the SDKs measured
since the step started (:meth:`~vibesdk_server._storage.SqlStore.measurements`), maps it to
per-arm aggregates with :func:`aggregates`, and asks :func:`~.decide.decide` for one of hold,
advance, pause or roll back (:func:`evaluate`). Reaching the last step completes the release:
at 100% there is no stable arm left to compare with.

The default guardrails (:func:`default_guardrails`), each judged on the step's figures:

* ``breakage`` -- at least 50% of at least 20 canary calls had a failed attempt on the canary
  (retried, fell back to stable or raised): roll back at once, no test.
* ``slow_calls`` -- relative: the canary's share of calls slower than 3 s against stable's,
  tolerating 5 percentage points more; roll back when the bound proves more. Relative, so an
  app that is slow for both arms (overloaded, a slow provider) does not roll a canary back.
* ``failed_attempts`` -- relative: the canary's share of calls with a failed attempt on their
  own variant against stable's, tolerating 1 percentage point more. A retry that hides the
  failure from the user still counts: a canary whose backend fails one attempt in five is
  broken even while the retries keep its users answered.
* ``fallbacks`` -- relative: the canary's share of calls that fell back against stable's share
  of calls no backend answered (stable has nothing to fall back to), tolerating 1 percentage
  point more; roll back when the bound proves more. Relative, so an app that fails its own calls
  (an overloaded event loop missing connect deadlines, a full connection queue) does not roll
  a canary back.
* ``check:<name>`` -- relative, one per output check that failed in either arm: its failure
  share against stable's (tolerance 0); roll back when the bound proves more.

A flag's release plan (:mod:`.plan`, the ``release:`` section of its flags file) may change
their thresholds and actions, turn them off, or turn on the others: ``latency`` (absolute: at
most 5% of canary calls over 3 s, P95 < 3 s, whatever stable does), ``attempt_errors``,
``errors``, ``output_length``, ``feedback_score``, ``review_score``, ``eval_regression`` and
``reports``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._guard.decide import (
    ArmAggregates,
    Count,
    Decision,
    Drop,
    Guardrail,
    decide,
)
from vibesdk_server._guard.plan import (
    BPS_MAX,
    CHECK,
    DEFAULT_MIN_DWELL_S,
    DEFAULT_MIN_SAMPLES,
    DEFAULT_STEPS_BPS,
    guardrail_rules,
)
from vibesdk_server._guard.stats import Moments

__all__ = [
    "BPS_MAX",
    "CHECK",
    "DEFAULT_MIN_DWELL_S",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_STEPS_BPS",
    "aggregates",
    "check_names",
    "check_steps",
    "default_guardrails",
    "evaluate",
    "guardrails_from_json",
    "histogram_moments",
    "step_since",
    "summary",
]

_CHECK = CHECK


def check_steps(steps: Sequence[int]) -> tuple[int, ...]:
    """``steps`` (basis points) if they rise strictly within 1..10000; else a clear error."""
    if not steps:
        raise InvalidError("a release needs at least one step, e.g. 10%, 50%, 100%")
    if any(not 0 < s <= BPS_MAX for s in steps):
        raise InvalidError(f"steps are 1..10000 basis points (0.01%..100%), got {list(steps)}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidError(f"steps must rise, each above the one before, got {list(steps)}")
    return tuple(steps)


def check_names(measured: Mapping[str, Mapping[str, Any]], variants: Iterable[str]) -> list[str]:
    """The output checks that failed in any of ``variants``, sorted."""
    names: set[str] = set()
    for v in variants:
        names.update((measured.get(v) or {}).get("quality_failures", {}))
    return sorted(names)


def default_guardrails(checks: Iterable[str] = ()) -> list[Guardrail]:
    """The guardrails of a release that names none (see the module docstring)."""
    return guardrail_rules(None, checks)


def guardrails_from_json(data: Sequence[Mapping[str, Any]]) -> list[Guardrail]:
    """Guardrails given as JSON objects (the fields of :class:`Guardrail`); a clear error if bad."""
    known = set(Guardrail.__dataclass_fields__)
    rules = []
    for item in data:
        unknown = sorted(set(item) - known)
        if unknown:
            raise InvalidError(f"guardrail fields {unknown} are unknown; use {sorted(known)}")
        try:
            rules.append(Guardrail(**item))
        except TypeError as exc:
            raise InvalidError(
                f"a guardrail needs name, kind, metric and threshold: {exc}"
            ) from None
    return rules


#: ``error.type`` of a call that no backend answered (the SDK's ``AllBackendsFailedError``): on
#: the stable arm, where a failed call has nothing to fall back to, the same event that is a
#: fallback on the canary's.
UNANSWERED = "all_failed"


def _count(events: float, trials: int) -> Count:
    # Counters and the duration histogram arrive in separate exports: cap, never fail.
    return Count(max(0, min(round(events), trials)), trials)


def aggregates(
    figures: Mapping[str, Any] | None,
    checks: Iterable[str] = (),
    drop: Drop | None = None,
    *,
    stable: bool = False,
) -> ArmAggregates:
    """One arm's :class:`ArmAggregates` from its ``measurements`` figures (``None``: no calls).

    ``calls`` are the calls of users assigned to the arm; ``fallbacks`` is calls that fell back
    to stable out of calls, and for the ``stable`` arm, calls that no backend answered
    (:data:`UNANSWERED`): a stable call whose attempts all failed has nothing to fall back to and
    raises, so this is what the canary's fallbacks are compared with. Counted on both arms, a
    failure the app causes for itself (an overloaded event loop missing connect deadlines, its
    own client's full queue, ``timeout_queue``) weighs on both alike. ``slow_calls``
    calls over 3 s out of calls, ``errors`` calls that raised out of calls, ``failed_attempts``
    calls with a failed attempt on the assigned variant (retried, fell back or raised) out of
    calls, ``reports`` reports users filed out of calls, and ``check:<name>`` each of
    ``checks``'s failures out of calls (0 where the arm never failed it). ``output_length``
    (output tokens per answer, its variance from the histogram: :func:`histogram_moments`),
    ``feedback_score`` (users' scores) and ``review_score`` (reviewers' scores, ``vibe review``)
    are means. ``eval_regression`` is ``drop`` (the arm's golden-set drop; none judged when
    ``None``). ``users`` are the users the SDKs counted in the arm (``vibesdk.exposures``), and
    ``users_by_client`` the same per SDK client, which the sample-ratio test counts.
    """
    f = figures or {}
    calls = int(f.get("calls", 0))
    tokens = f.get("output_tokens") or {}
    received = f.get("feedback_received") or {}
    metrics: dict[str, Count | Moments | Drop] = {
        "fallbacks": _count(
            sum(f.get("fallbacks", {}).values())
            + (f.get("errors", {}).get(UNANSWERED, 0) if stable else 0),
            calls,
        ),
        "slow_calls": _count(f.get("slow_calls", 0), calls),
        "errors": _count(sum(f.get("errors", {}).values()), calls),
        "failed_attempts": _count(f.get("failed_attempts", 0), calls),
        "reports": _count(received.get("reports", 0), calls),
        "output_length": histogram_moments(
            int(tokens.get("count", 0)), float(tokens.get("sum", 0.0)), tokens.get("histogram")
        ),
        "feedback_score": _moments(received),
        "review_score": _moments(received.get("review") or {}),
    }
    metrics["eval_regression"] = drop or Drop(None)
    failures = f.get("quality_failures", {})
    for name in checks:
        metrics[_CHECK + name] = _count(failures.get(name, 0), calls)
    by_client = {str(k): int(n) for k, n in (f.get("users_by_client") or {}).items()}
    return ArmAggregates(calls, metrics, users=int(f.get("users", 0)), users_by_client=by_client)


def _moments(scores: Mapping[str, Any]) -> Moments:
    return Moments(
        int(scores.get("count", 0)), float(scores.get("sum", 0.0)), float(scores.get("sum_sq", 0.0))
    )


def histogram_moments(count: int, total: float, histogram: Mapping[str, Any] | None) -> Moments:
    """Output tokens per answer as :class:`Moments`: the exact count and sum, the variance
    estimated from the histogram's buckets (values spread evenly within each bucket, the last,
    open one at its lower bound). No histogram (or one that disagrees with ``count``): no
    observations, so a guardrail on it is not judged -- it holds, never acts on a guess."""
    bounds = list((histogram or {}).get("bounds") or [])
    counts = list((histogram or {}).get("counts") or [])
    if count <= 0 or len(counts) != len(bounds) + 1 or sum(counts) != count:
        return Moments(0, 0.0, 0.0)
    first = second = 0.0
    for i, n in enumerate(counts):
        low = max(0.0, bounds[i - 1]) if i > 0 else 0.0
        if i == len(bounds):
            mean_sq, mean = low * low, low
        else:
            high = max(low, float(bounds[i]))
            mean, mean_sq = (low + high) / 2, (low * low + low * high + high * high) / 3
        first += n * mean
        second += n * mean_sq
    variance = max(second / count - (first / count) ** 2, 0.0)
    mean = total / count
    return Moments(count, total, count * (variance + mean * mean))


def step_since(step_started_s: float) -> int:
    """The first measurement interval wholly inside a step that started at ``step_started_s``.

    Measurements are kept per interval (its start, whole seconds); an interval that began
    before the step holds calls of the step before, at another share, and is left out.
    """
    return math.ceil(step_started_s)


def evaluate(
    release: Mapping[str, Any],
    measured: Mapping[str, Mapping[str, Any]],
    *,
    now: float,
    drop: Drop | None = None,
) -> Decision:
    """The decision for ``release``'s current step, from ``measured`` (figures per variant)
    and ``drop``, the canary's golden-set drop judged in the step (``None``: none yet)."""
    canary, stable = release["canary_variant"], release["stable_variant"]
    if release.get("guardrails"):
        rules = guardrails_from_json(release["guardrails"])
        checks = [r.metric[len(_CHECK) :] for r in rules if r.metric.startswith(_CHECK)]
    else:
        checks = check_names(measured, (canary, stable))
        rules = guardrail_rules((release.get("plan") or {}).get("guardrails"), checks)
    bps = release["steps"][release["step"]]
    return decide(
        rules,
        aggregates(measured.get(canary), checks, drop),
        aggregates(measured.get(stable), checks, stable=True),
        canary_share=bps / BPS_MAX,
        min_samples_per_arm=int(release["min_samples"]),
        dwell_s=max(0.0, now - float(release["step_started_s"])),
        min_dwell_s=float(release["min_dwell_s"]),
    )


def summary(decision: Decision) -> str:
    """The decision's reasons in one line, for audit reasons and logs."""
    return "; ".join(r.message for r in decision.reasons)
