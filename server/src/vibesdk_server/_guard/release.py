"""What a guarded release is, and how its measurements become a decision: pure, no I/O.

A release walks one flag's canary (its ``rollout_variant``) through rollout steps, by default
1 -> 5 -> 10 -> 25 -> 50 -> 100%. At every step the guard loop reads what the SDKs measured
since the step started (:meth:`~vibesdk_server._storage.SqlStore.measurements`), maps it to
per-arm aggregates with :func:`aggregates`, and asks :func:`~.decide.decide` for one of hold,
advance, pause or roll back (:func:`evaluate`). Reaching the last step completes the release:
at 100% there is no stable arm left to compare with.

The default guardrails (:func:`default_guardrails`), each judged on the step's figures:

* ``breakage`` -- at least 50% of at least 20 canary calls fell back to stable: roll back at
  once, no test.
* ``latency`` -- absolute: at most 5% of canary calls slower than 3 s (P95 < 3 s); roll back
  when the confidence bound proves more.
* ``fallbacks`` -- relative: the canary's share of calls that fell back against stable's,
  tolerating 1 percentage point more; roll back when the bound proves more.
* ``check:<name>`` -- relative, one per output check that failed in either arm: its failure
  share against stable's (tolerance 0); roll back when the bound proves more.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._guard.decide import ArmAggregates, Count, Decision, Guardrail, decide

__all__ = [
    "BPS_MAX",
    "DEFAULT_MIN_DWELL_S",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_STEPS_BPS",
    "aggregates",
    "check_names",
    "check_steps",
    "default_guardrails",
    "evaluate",
    "guardrails_from_json",
    "step_since",
    "summary",
]

BPS_MAX = 10_000
DEFAULT_STEPS_BPS = (100, 500, 1000, 2500, 5000, 10_000)
DEFAULT_MIN_DWELL_S = 120.0
DEFAULT_MIN_SAMPLES = 200
BREAKAGE_SHARE = 0.5
BREAKAGE_MIN_CALLS = 20
SLOW_SHARE = 0.05
FALLBACK_MARGIN = 0.01
_CHECK = "check:"


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
    rules = [
        Guardrail(
            "breakage",
            "breakage",
            "fallbacks",
            BREAKAGE_SHARE,
            min_trials=BREAKAGE_MIN_CALLS,
        ),
        Guardrail("latency", "absolute", "slow_calls", SLOW_SHARE),
        Guardrail("fallbacks", "relative", "fallbacks", FALLBACK_MARGIN),
    ]
    rules += [Guardrail(_CHECK + name, "relative", _CHECK + name, 0.0) for name in checks]
    return rules


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


def _count(events: float, trials: int) -> Count:
    # Counters and the duration histogram arrive in separate exports: cap, never fail.
    return Count(max(0, min(round(events), trials)), trials)


def aggregates(figures: Mapping[str, Any] | None, checks: Iterable[str] = ()) -> ArmAggregates:
    """One arm's :class:`ArmAggregates` from its ``measurements`` figures (``None``: no calls).

    ``calls`` are the calls of users assigned to the arm; ``fallbacks`` is calls that fell back
    to stable (all reasons) out of calls, ``slow_calls`` calls over 3 s out of calls, ``errors``
    calls that raised out of calls, and ``check:<name>`` each of ``checks``'s failures out of
    calls (0 where the arm never failed it).
    """
    f = figures or {}
    calls = int(f.get("calls", 0))
    metrics: dict[str, Count] = {
        "fallbacks": _count(sum(f.get("fallbacks", {}).values()), calls),
        "slow_calls": _count(f.get("slow_calls", 0), calls),
        "errors": _count(sum(f.get("errors", {}).values()), calls),
    }
    failures = f.get("quality_failures", {})
    for name in checks:
        metrics[_CHECK + name] = _count(failures.get(name, 0), calls)
    return ArmAggregates(calls, metrics)


def step_since(step_started_s: float) -> int:
    """The first measurement interval wholly inside a step that started at ``step_started_s``.

    Measurements are kept per interval (its start, whole seconds); an interval that began
    before the step holds calls of the step before, at another share, and is left out.
    """
    return math.ceil(step_started_s)


def evaluate(
    release: Mapping[str, Any], measured: Mapping[str, Mapping[str, Any]], *, now: float
) -> Decision:
    """The decision for ``release``'s current step, from ``measured`` (figures per variant)."""
    canary, stable = release["canary_variant"], release["stable_variant"]
    if release.get("guardrails"):
        rules = guardrails_from_json(release["guardrails"])
        checks = [r.metric[len(_CHECK) :] for r in rules if r.metric.startswith(_CHECK)]
    else:
        checks = check_names(measured, (canary, stable))
        rules = default_guardrails(checks)
    bps = release["steps"][release["step"]]
    return decide(
        rules,
        aggregates(measured.get(canary), checks),
        aggregates(measured.get(stable), checks),
        canary_share=bps / BPS_MAX,
        min_samples_per_arm=int(release["min_samples"]),
        dwell_s=max(0.0, now - float(release["step_started_s"])),
        min_dwell_s=float(release["min_dwell_s"]),
    )


def summary(decision: Decision) -> str:
    """The decision's reasons in one line, for audit reasons and logs."""
    return "; ".join(r.message for r in decision.reasons)
