"""One guard-loop decision for one release step: hold, advance, pause or roll back.

:func:`decide` reads the guardrails and the per-arm aggregates of the step so far and returns a
:class:`Decision` with the evidence behind it, as plain data (``to_dict()`` is JSON-ready).
The rules, in the order they are applied:

1. **Obvious breakage** (``kind="breakage"``): the canary alone, no test. With at least
   ``min_trials`` canary trials (default 20) and a share of events ``>= threshold`` (e.g. 0.5 of
   ``failed_attempts``), the guardrail's action is taken at once.
2. **Sample ratio mismatch**: chi-square of the users per arm against the configured canary
   share -- the users of the SDK client that counted the most
   (:attr:`ArmAggregates.users_by_client`: one client's users are distinct, a sum over clients
   is not), or of the calls when no arm counted users (older SDKs); ``p < srm_p_value``
   (default 0.001) stops the analysis and holds with ``"srm"``: the
   figures of a step whose traffic is not split as configured cannot be trusted either way.
   The decision's ``srm`` says which unit was tested (:class:`~.stats.SrmResult`).
3. **Too few samples**: either arm below ``min_samples_per_arm`` calls holds with
   ``"too_few_samples"``; the statistical guardrails are not judged yet (verdict
   ``"insufficient_data"``). So does a guardrail whose own metric has fewer than its
   ``min_trials`` observations (default 20; e.g. sparse feedback scores), once the rest found
   no breach. Silence never advances and never rolls back.
4. **Statistical guardrails**, each a one-sided always-valid confidence sequence
   (:mod:`.stats`) tuned to be tightest where the step is first judged (its
   ``min_samples_per_arm``, :func:`~.stats.step_planned_samples`), checked at every call of
   the loop:

   * ``kind="relative"``: canary against stable. ``tolerance="difference"``: breach when the
     bound on ``canary - stable`` is beyond ``threshold`` (an absolute margin in the metric's
     units, often 0); ``tolerance="ratio"``: breach when the canary is proven worse than stable
     by more than ``threshold`` as a fraction (0.2 = 20% above stable for ``harm="increase"``,
     20% below for ``harm="decrease"``).
   * ``kind="absolute"``: the canary alone against ``threshold``: "P95 latency < 3 s" is "at most
     5% of canary calls over 3 s", i.e. ``metric="slow_calls", threshold=0.05``.
   * ``kind="eval"`` (not a confidence sequence: one test per evaluation run): the canary's
     golden-set score in the newest evaluation run finished during the step, against its
     baseline (:mod:`vibesdk_server._eval.alarm`), as a :class:`Drop`. Judged right after the
     breakage rules (1.), since it does not depend on the traffic split: breach when the
     one-sided lower ``1 - alpha`` bound on the drop is above ``threshold`` (0: any drop the
     test proves). No judged run in the step yet holds, like a guardrail short of data (3.):
     it never advances nor rolls back on silence.

   Any breach takes the strongest action among the breached guardrails (``rollback`` over
   ``pause``).
5. **Dwell**: with no breach, the step holds with ``"dwell_not_reached"`` until
   ``dwell_s >= min_dwell_s``, then **advances**.

Metrics are looked up by name in each arm's :class:`ArmAggregates`: a proportion as
:class:`Count` (events out of trials), a mean as :class:`~.stats.Moments` (count, sum, sum of
squares), a golden-set drop as :class:`Drop`. The guard loop names them; the usual names are
in :data:`METRIC_NAMES`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._eval.alarm import drop_bound
from vibesdk_server._guard.stats import (
    DEFAULT_ALPHA,
    Bound,
    Harm,
    Moments,
    SrmResult,
    canary_bound,
    difference_bound,
    split_text,
    srm_test,
    step_planned_samples,
)

__all__ = [
    "DEFAULT_SRM_P_VALUE",
    "METRIC_NAMES",
    "ArmAggregates",
    "Count",
    "Decision",
    "Drop",
    "Guardrail",
    "GuardrailEvidence",
    "Reason",
    "decide",
]

DEFAULT_SRM_P_VALUE = 0.001

METRIC_NAMES = (
    "failed_attempts",  # calls with a failed attempt on their variant (Count over calls)
    "fallbacks",  # calls answered by stable after a canary failure (Count over calls)
    "slow_calls",  # calls over 3 s (Count over calls)
    "check:<name>",  # failures of one output check (Count over checked answers)
    "feedback_score",  # users' scores (Moments)
    "review_score",  # reviewers' scores, vibe review (Moments)
    "output_length",  # answer length (Moments)
    "eval_regression",  # the golden-set score's fall from its baseline (Drop, canary only)
)
"""Conventional metric names; any name works as long as both the guardrail and the arms use it."""

GuardKind = Literal["relative", "absolute", "breakage", "eval"]
GuardAction = Literal["rollback", "pause"]
Tolerance = Literal["difference", "ratio"]
Verdict = Literal["breach", "no_breach", "insufficient_data"]
DecisionAction = Literal["hold", "advance", "pause", "rollback"]


@dataclass(frozen=True)
class Count:
    """``events`` out of ``trials``: failed attempts out of attempts, slow calls out of calls."""

    events: int
    trials: int

    def __post_init__(self) -> None:
        if not 0 <= self.events <= self.trials:
            raise InvalidError(f"need 0 <= events <= trials, got {self.events} of {self.trials}")

    def moments(self) -> Moments:
        return Moments.of_count(self.events, self.trials)


@dataclass(frozen=True)
class Drop:
    """How far the canary's golden-set score fell from its baseline in one evaluation run.

    ``estimate`` is baseline minus run, ``se`` its standard error; ``None`` when no run was
    judged (none finished in the step, or too few answers or no baseline to test).
    """

    estimate: float | None
    se: float = 0.0
    n: int = 0
    baseline_n: int = 0
    run_id: int | None = None


@dataclass(frozen=True)
class ArmAggregates:
    """One arm's figures for the step so far: its calls, its users and each metric by name.

    ``users`` are the users the SDKs counted in the arm (``vibesdk.exposures``); 0 in both
    arms means none were counted (SDKs too old to count them) and the split is tested on calls.
    ``users_by_client`` is the same count per SDK client (``vibesdk.client.id``; ``""`` for SDKs
    that send none): a user that several clients met (workers behind round-robin routing) is in
    ``users`` once per client, but only once in each client's count, so the sample-ratio test
    reads one client's. Empty: ``users`` is taken as one client's.
    """

    calls: int
    metrics: Mapping[str, Count | Moments | Drop] = field(default_factory=dict)
    users: int = 0
    users_by_client: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calls < 0:
            raise InvalidError(f"calls must be >= 0, got {self.calls}")
        if self.users < 0:
            raise InvalidError(f"users must be >= 0, got {self.users}")
        negative = {k: n for k, n in self.users_by_client.items() if n < 0}
        if negative:
            raise InvalidError(f"users_by_client counts must be >= 0, got {negative}")


@dataclass(frozen=True)
class Guardrail:
    """One rule a release step must keep; see the module docstring for each kind."""

    name: str
    kind: GuardKind
    metric: str
    threshold: float
    action: GuardAction = "rollback"
    harm: Harm = "increase"
    tolerance: Tolerance = "difference"
    min_trials: int = 20
    """Fewest observations of ``metric`` before the rule is judged: canary trials for
    ``breakage``, canary observations for ``absolute``, observations per arm for ``relative``."""

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidError("a guardrail needs a name")
        if self.kind not in ("relative", "absolute", "breakage", "eval"):
            raise InvalidError(
                f"guardrail {self.name!r}: kind must be relative, absolute, breakage or eval,"
                f" got {self.kind!r}"
            )
        if self.action not in ("rollback", "pause"):
            raise InvalidError(
                f"guardrail {self.name!r}: action must be rollback or pause, got {self.action!r}"
            )
        if self.harm not in ("increase", "decrease"):
            raise InvalidError(
                f"guardrail {self.name!r}: harm must be increase or decrease, got {self.harm!r}"
            )
        if self.tolerance not in ("difference", "ratio"):
            raise InvalidError(
                f"guardrail {self.name!r}: tolerance must be difference or ratio,"
                f" got {self.tolerance!r}"
            )
        if not math.isfinite(self.threshold):
            raise InvalidError(f"guardrail {self.name!r}: threshold must be a finite number")
        if self.kind == "breakage" and not 0.0 < self.threshold <= 1.0:
            raise InvalidError(
                f"guardrail {self.name!r}: a breakage threshold is a share of trials in (0, 1],"
                f" got {self.threshold}"
            )
        if self.kind == "eval" and not 0.0 <= self.threshold < 1.0:
            raise InvalidError(
                f"guardrail {self.name!r}: an eval threshold is a score difference in [0, 1),"
                f" got {self.threshold}"
            )
        if self.min_trials < 1:
            raise InvalidError(
                f"guardrail {self.name!r}: min_trials must be >= 1, got {self.min_trials}"
            )
        if self.tolerance == "ratio" and self.kind != "relative":
            raise InvalidError(
                f"guardrail {self.name!r}: tolerance='ratio' only applies to kind='relative'"
            )
        if self.tolerance == "ratio" and (
            self.threshold < 0 or (self.harm == "decrease" and self.threshold >= 1)
        ):
            raise InvalidError(
                f"guardrail {self.name!r}: a ratio threshold must be >= 0 (and < 1 when"
                f" harm='decrease'), got {self.threshold}"
            )


@dataclass(frozen=True)
class GuardrailEvidence:
    """What one guardrail saw: estimate, bound (``None`` until judged), n per arm, verdict."""

    name: str
    kind: GuardKind
    metric: str
    threshold: float
    action: GuardAction
    verdict: Verdict
    contrast: str
    """What ``estimate`` estimates: ``canary``, ``canary - stable``, ``canary - 1.2 x stable``."""
    estimate: float | None
    bound: float | None
    limit: float
    """What ``bound`` is compared with: ``threshold``, or 0 for a ratio tolerance."""
    n_canary: int
    n_stable: int | None


@dataclass(frozen=True)
class Reason:
    """Why the decision is what it is: a stable code for programs, a sentence for people."""

    code: Literal[
        "breakage",
        "breach",
        "srm",
        "too_few_samples",
        "dwell_not_reached",
        "ready",
        "source_unavailable",  # the metrics source did not answer (see .sources.judge)
    ]
    message: str


@dataclass(frozen=True)
class Decision:
    """The loop's answer for one step, with its reasons and every guardrail's evidence."""

    action: DecisionAction
    reasons: tuple[Reason, ...]
    evidence: tuple[GuardrailEvidence, ...]
    srm: SrmResult
    dwell_s: float
    min_dwell_s: float
    min_samples_per_arm: int
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (infinities become ``None``) for the audit log and the API."""
        data: dict[str, Any] = _finite(asdict(self))
        return data


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _metric(arm: ArmAggregates, rule: Guardrail, arm_name: str) -> Moments:
    try:
        value = arm.metrics[rule.metric]
    except KeyError:
        raise InvalidError(
            f"guardrail {rule.name!r}: metric {rule.metric!r} is missing from the {arm_name}"
            f" arm's aggregates (it has: {', '.join(sorted(arm.metrics)) or 'none'})"
        ) from None
    if isinstance(value, Count):
        return value.moments()
    if isinstance(value, Drop):
        raise InvalidError(f"guardrail {rule.name!r}: metric {rule.metric!r} is an eval Drop")
    return value


def _contrast(rule: Guardrail) -> tuple[str, float, float]:
    """How a rule compares the arms: its description, the ratio on stable, and the limit."""
    if rule.kind == "breakage":
        return "canary share", 0.0, rule.threshold
    if rule.kind == "eval":
        return "baseline - canary", 0.0, rule.threshold
    if rule.kind == "absolute":
        return "canary", 0.0, rule.threshold
    if rule.tolerance == "ratio":
        ratio = 1.0 + (rule.threshold if rule.harm == "increase" else -rule.threshold)
        return f"canary - {ratio:g} x stable", ratio, 0.0
    return "canary - stable", 1.0, rule.threshold


def _evidence(
    rule: Guardrail,
    verdict: Verdict,
    bound: Bound | None,
    n_canary: int,
    n_stable: int | None,
) -> GuardrailEvidence:
    contrast, _, limit = _contrast(rule)
    return GuardrailEvidence(
        name=rule.name,
        kind=rule.kind,
        metric=rule.metric,
        threshold=rule.threshold,
        action=rule.action,
        verdict=verdict,
        contrast=contrast,
        estimate=None if bound is None else bound.estimate,
        bound=None if bound is None else bound.bound,
        limit=limit,
        n_canary=n_canary,
        n_stable=n_stable,
    )


def _breakage(rule: Guardrail, canary: ArmAggregates) -> GuardrailEvidence:
    _metric(canary, rule, "canary")
    value = canary.metrics[rule.metric]
    if not isinstance(value, Count):
        raise InvalidError(
            f"guardrail {rule.name!r}: a breakage rule needs a Count (events out of trials),"
            f" but {rule.metric!r} is {type(value).__name__}"
        )
    if value.trials < rule.min_trials:
        return _evidence(rule, "insufficient_data", None, value.trials, None)
    share = value.events / value.trials
    verdict: Verdict = "breach" if share >= rule.threshold else "no_breach"
    return _evidence(rule, verdict, Bound(share, share, 0.0), value.trials, None)


def _eval(rule: Guardrail, canary: ArmAggregates, alpha: float) -> GuardrailEvidence:
    value = canary.metrics.get(rule.metric, Drop(None))
    if not isinstance(value, Drop):
        raise InvalidError(
            f"guardrail {rule.name!r}: an eval rule needs a Drop, but {rule.metric!r} is"
            f" {type(value).__name__}"
        )
    if value.estimate is None:
        return _evidence(rule, "insufficient_data", None, value.n, value.baseline_n)
    bound = drop_bound(value.estimate, value.se, alpha)
    verdict: Verdict = "breach" if bound > rule.threshold else "no_breach"
    half = value.estimate - bound
    return _evidence(rule, verdict, Bound(value.estimate, bound, half), value.n, value.baseline_n)


def _statistical(
    rule: Guardrail,
    canary: ArmAggregates,
    stable: ArmAggregates,
    *,
    enough: bool,
    alpha: float,
    planned_samples: float | None,
    min_samples_per_arm: int,
    canary_share: float,
) -> GuardrailEvidence:
    c = _metric(canary, rule, "canary")
    if planned_samples is None:
        planned_samples = step_planned_samples(
            min_samples_per_arm, canary_share, relative=rule.kind == "relative"
        )
    sign = 1.0 if rule.harm == "increase" else -1.0
    _, ratio, limit = _contrast(rule)
    if rule.kind == "absolute":
        if not enough or c.n < rule.min_trials:
            return _evidence(rule, "insufficient_data", None, c.n, None)
        bound = canary_bound(c, harm=rule.harm, alpha=alpha, planned_samples=planned_samples)
        n_stable: int | None = None
    else:
        s = _metric(stable, rule, "stable")
        if not enough or min(c.n, s.n) < rule.min_trials:
            return _evidence(rule, "insufficient_data", None, c.n, s.n)
        bound = difference_bound(
            c, s, ratio=ratio, harm=rule.harm, alpha=alpha, planned_samples=planned_samples
        )
        n_stable = s.n
    verdict: Verdict = "breach" if sign * (bound.bound - limit) > 0 else "no_breach"
    return _evidence(rule, verdict, bound, c.n, n_stable)


def _unjudged_message(e: GuardrailEvidence, guardrails: Sequence[Guardrail]) -> str:
    if e.kind == "eval":
        return (
            f"{e.name}: no evaluation run of the canary judged in this step yet (it needs one"
            " finished during the step, with enough answers and a baseline); vibe eval run"
        )
    return (
        f"{e.name}: {e.n_canary} canary"
        + ("" if e.n_stable is None else f" / {e.n_stable} stable")
        + f" observations of {e.metric}; it needs {_rule(guardrails, e).min_trials}"
        + ("" if e.n_stable is None else " per arm")
    )


def _rule(guardrails: Sequence[Guardrail], evidence: GuardrailEvidence) -> Guardrail:
    return next(g for g in guardrails if g.name == evidence.name)


def _strongest(breached: Sequence[GuardrailEvidence]) -> DecisionAction:
    return "rollback" if any(e.action == "rollback" for e in breached) else "pause"


def _breach_message(e: GuardrailEvidence) -> str:
    if e.kind == "breakage":
        found = f"{e.estimate:.4g} reaches {e.limit:g}"
    else:
        found = f"{e.estimate:.4g} (bound {e.bound:.4g}) is past {e.limit:g}"
    other = "baseline" if e.kind == "eval" else "stable"
    samples = f"{e.n_canary} canary" + ("" if e.n_stable is None else f" / {e.n_stable} {other}")
    return f"{e.name}: {e.contrast} {e.metric} {found} with {samples} samples"


def _breach_reasons(
    code: Literal["breakage", "breach"], breached: Sequence[GuardrailEvidence]
) -> tuple[Reason, ...]:
    return tuple(Reason(code, _breach_message(e)) for e in breached)


def _one_clients_users(canary: ArmAggregates, stable: ArmAggregates) -> tuple[int, int, int]:
    """The canary and stable users of the SDK client that counted the most users in the step
    (both arms together; ties go to the first id in order), and how many clients counted.

    A client counts each user once, so its counts are distinct users split as assignment split
    them. Their sum over clients is not: behind round-robin routing every busy user is counted
    by every worker, and a chi-square on the sum would be about as many times too large as
    there are workers. Which client is read depends only on how many users each met, not on
    their arms, so the test on its counts keeps its level.
    """
    if not canary.users_by_client and not stable.users_by_client:
        return canary.users, stable.users, 1
    ids = sorted(set(canary.users_by_client) | set(stable.users_by_client))

    def met(client: str) -> int:
        return canary.users_by_client.get(client, 0) + stable.users_by_client.get(client, 0)

    best = max(ids, key=met)  # the first of the largest, in id order
    return canary.users_by_client.get(best, 0), stable.users_by_client.get(best, 0), len(ids)


def decide(  # noqa: PLR0911 -- one return per rule, in the order the docstring lists them
    guardrails: Sequence[Guardrail],
    canary: ArmAggregates,
    stable: ArmAggregates,
    *,
    canary_share: float,
    min_samples_per_arm: int,
    dwell_s: float,
    min_dwell_s: float,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float | None = None,
    srm_p_value: float = DEFAULT_SRM_P_VALUE,
) -> Decision:
    """The decision for one step; see the module docstring for the rules and their order.

    ``canary_share`` is the configured share of the step (0.1 for 10%); ``dwell_s`` the time
    the step has run, ``min_dwell_s`` the time it must run before advancing; ``planned_samples``
    tunes the confidence sequence (:mod:`.stats`); ``None`` (the guard's choice) plans each
    guardrail for the step's first judgement, :func:`~.stats.step_planned_samples`. Raises
    :class:`InvalidError` for bad input (a guardrail's metric missing from an arm, a share
    outside (0, 1), ...).
    """
    if min_samples_per_arm < 1:
        raise InvalidError(f"min_samples_per_arm must be >= 1, got {min_samples_per_arm}")
    if not 0.0 < srm_p_value < 1.0:
        raise InvalidError(f"srm_p_value must be in (0, 1), got {srm_p_value}")
    if dwell_s < 0 or min_dwell_s < 0:
        raise InvalidError(f"dwell times must be >= 0, got {dwell_s} and {min_dwell_s}")
    names = [g.name for g in guardrails]
    if len(set(names)) != len(names):
        raise InvalidError(f"guardrail names must be unique, got {names}")
    canary_users = stable_users = None  # no SDK counted users: the calls are tested
    clients = 0
    if canary.users + stable.users > 0:
        canary_users, stable_users, clients = _one_clients_users(canary, stable)
    srm = srm_test(
        canary.calls,
        stable.calls,
        canary_share,
        canary_users=canary_users,
        stable_users=stable_users,
        clients=clients,
    )
    enough = min(canary.calls, stable.calls) >= min_samples_per_arm

    breakage = [_breakage(g, canary) for g in guardrails if g.kind == "breakage"]
    evals = [_eval(g, canary, alpha) for g in guardrails if g.kind == "eval"]
    tested = [
        _statistical(
            g,
            canary,
            stable,
            enough=enough,
            alpha=alpha,
            planned_samples=planned_samples,
            min_samples_per_arm=min_samples_per_arm,
            canary_share=canary_share,
        )
        for g in guardrails
        if g.kind not in ("breakage", "eval")
    ]
    # Keep the caller's order in the evidence.
    by_name = {e.name: e for e in [*breakage, *evals, *tested]}
    evidence = tuple(by_name[n] for n in names)

    def result(action: DecisionAction, *reasons: Reason) -> Decision:
        return Decision(
            action, reasons, evidence, srm, dwell_s, min_dwell_s, min_samples_per_arm, alpha
        )

    broken = [e for e in breakage if e.verdict == "breach"]
    if broken:
        return result(_strongest(broken), *_breach_reasons("breakage", broken))
    fallen = [e for e in evals if e.verdict == "breach"]
    if fallen:
        return result(_strongest(fallen), *_breach_reasons("breach", fallen))
    if srm.p_value < srm_p_value:
        return result(
            "hold",
            Reason(
                "srm",
                f"sample ratio mismatch: {split_text(asdict(srm))}, chi2 {srm.chi2:.2f},"
                f" p {srm.p_value:.2g}"
                f" < {srm_p_value:g}: analysis stopped until the split is fixed",
            ),
        )
    if not enough:
        return result(
            "hold",
            Reason(
                "too_few_samples",
                f"{canary.calls} canary / {stable.calls} stable calls; each arm needs"
                f" {min_samples_per_arm}",
            ),
        )
    breached = [e for e in tested if e.verdict == "breach"]
    if breached:
        return result(_strongest(breached), *_breach_reasons("breach", breached))
    unjudged = [e for e in [*evals, *tested] if e.verdict == "insufficient_data"]
    if unjudged:
        return result(
            "hold",
            *(Reason("too_few_samples", _unjudged_message(e, guardrails)) for e in unjudged),
        )
    if dwell_s < min_dwell_s:
        return result(
            "hold",
            Reason(
                "dwell_not_reached",
                f"no guardrail breached yet; the step has run {dwell_s:.0f} s"
                f" of {min_dwell_s:.0f} s",
            ),
        )
    return result(
        "advance",
        Reason(
            "ready",
            f"no guardrail breached after {dwell_s:.0f} s with {canary.calls} canary /"
            f" {stable.calls} stable calls",
        ),
    )
