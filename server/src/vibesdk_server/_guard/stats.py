# ruff: noqa: RUF002  -- the formulas are written in the paper's notation (Greek letters, minus signs)
"""Always-valid statistics for the guarded canary: confidence sequences and the SRM test.

Pure math on per-arm aggregates (count, sum, sum of squares); no I/O, no numpy, no scipy.

**The confidence sequence.** Canary-vs-stable differences, and the canary's own rates, are
judged with the asymptotic normal-mixture confidence sequence (CS) of Waudby-Smith, Arbour,
Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences" (2021, arXiv:2103.06476; its asymptotic CS for a mean): for i.i.d. observations
with sample mean ``m_t`` and sample standard deviation ``s_t`` after ``t`` of them, ::

    C_t = m_t  ±  s_t · M_t,   M_t = sqrt( 2(t·ρ² + 1) / (t²·ρ²) · log( sqrt(t·ρ² + 1) / α ) )

covers the true mean at *every* ``t`` at once with probability ≥ 1 − α (asymptotically), so
the bound may be looked at after every interval and acted on whenever it crosses (GrowthBook's
Safe Rollouts use the same sequence). ``M_t`` is the paper's margin for unit variance;
``ρ > 0`` is the standard deviation of the normal mixing distribution.

*One-sided toward harm.* We only ever ask "is harm proven?", so only one side of the sequence
is used, at a level ``α₁`` slightly above α: mixing over λ > 0 only (a half-normal) gives the
martingale ``2·Φ(x)·N_t``, where ``N_t`` is the two-sided mixture behind the formula above,
``S_t = t·(m_t − μ)/s_t`` and ``x = ρ·S_t / sqrt(t·ρ² + 1)``. Where the two-sided formula at
level α₁ is crossed, ``N_t ≥ 1/α₁`` and ``x ≥ sqrt(2·log(1/α₁))``, so the two-sided formula
evaluated at ::

    α₁ = 2·α·Φ( sqrt(2·log(1 / (2α))) )       (α = 0.05 → α₁ ≈ 0.0984)

is a valid one-sided level-α bound by Ville's inequality (a little tighter than using the
two-sided formula at α, a little wider than at 2α).

*Choosing ρ.* The margin is smallest, for a given ``t*``, when ``t*·ρ² = x`` with
``x = log(1 + x) − 2·log α₁``; the paper's closed-form approximation is used: ::

    ρ = sqrt( (−2·log α₁ + log(1 − 2·log α₁)) / t* )

where ``t*`` is the *planned sample size*: the number of observations (calls, both arms
together for a difference) at which the step is expected to decide. The CS is valid for any
ρ fixed before the data are seen; the choice only moves where it is tightest, and it loosens
slowly (logarithmically) away from ``t*``. The guard plans each step for the moment it is
first judged (:func:`step_planned_samples`): ``min_samples_per_arm`` canary calls for the
canary's own rate, and for a difference the calls of both arms when the smaller arm reaches
``min_samples_per_arm`` (``min_samples_per_arm / min(π, 1 − π)`` at canary share ``π``:
2,000 for 200 calls per arm at 10%). Both are fixed before the step begins, so the bound stays
valid; a gross regression is then proven within a few dozen calls of the gate (at ``t = t*``
the margin is about 2.8 standard errors, against 8.9 at ``t = 100`` for a sequence tuned to
10,000), and a small one later, on a margin that widens only slowly (about 3.0 standard
errors at 10·t*, 3.3 at 100·t*). :data:`DEFAULT_PLANNED_SAMPLES` (10,000) is the functions'
default when no step is given.

*Two arms.* Under randomised assignment with canary share π, the contrast
``mean_c − r·mean_s`` (``r = 1`` for a plain difference, ``1 ± margin`` for a relative
tolerance) is, to first order, the mean of the i.i.d. per-call influence values
``1{canary}·(Y − μ_c)/π − r·1{stable}·(Y − μ_s)/(1 − π)``, whose variance is estimated by
``N·(s_c²/n_c + r²·s_s²/n_s)``; the CS above is applied to that sequence with
``t = N = n_c + n_s``, the calls of both arms together.

**Sample ratio mismatch.** Pearson's chi-square goodness-of-fit of the units per arm against
the configured split, with one degree of freedom; its survival function is
``P(χ²₁ > x) = erfc(sqrt(x / 2))``. The unit is the user when the SDKs counted users: users are
what assignment hashes, so under a correct split each lands in the canary independently with
probability π and the test's assumptions hold. Calls are not independent draws (one user's
calls all land in one arm), so a few busy users move the calls' share far more than the test
allows for; calls are tested only when no user counts came (older SDKs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vibesdk_server._domain._errors import InvalidError

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_PLANNED_SAMPLES",
    "Bound",
    "Harm",
    "Moments",
    "SrmResult",
    "canary_bound",
    "chi2_sf_1df",
    "difference_bound",
    "mixture_margin",
    "one_sided_alpha",
    "split_text",
    "srm_test",
    "step_planned_samples",
    "tuned_rho",
]

DEFAULT_ALPHA = 0.05
DEFAULT_PLANNED_SAMPLES = 10_000

Harm = Literal["increase", "decrease"]
"""Which way a metric hurts users: more errors (``increase``), lower scores (``decrease``)."""


@dataclass(frozen=True)
class Moments:
    """Count, sum and sum of squares of one arm's observations of one metric.

    A proportion (``events`` out of ``trials``) is ``Moments.of_count(events, trials)``: each
    trial is a 0/1 observation, so the sum of squares equals the sum.
    """

    n: int
    total: float
    total_sq: float

    def __post_init__(self) -> None:
        if self.n < 0:
            raise InvalidError(f"a sample count must be >= 0, got {self.n}")
        if self.total_sq < 0:
            raise InvalidError(f"a sum of squares must be >= 0, got {self.total_sq}")

    @classmethod
    def of_count(cls, events: int, trials: int) -> Moments:
        if not 0 <= events <= trials:
            raise InvalidError(f"need 0 <= events <= trials, got {events} of {trials}")
        return cls(trials, float(events), float(events))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance with denominator ``n`` (the paper's ``s_t²``); 0 when empty."""
        if not self.n:
            return 0.0
        return max(self.total_sq / self.n - self.mean**2, 0.0)


@dataclass(frozen=True)
class Bound:
    """An estimate and its one-sided confidence-sequence bound on the harmless side.

    For ``harm="increase"`` ``bound`` is a lower bound (harm is proven when it exceeds the
    tolerance); for ``harm="decrease"`` it is an upper bound.
    """

    estimate: float
    bound: float
    half_width: float


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise InvalidError(f"alpha must be in (0, 0.5), got {alpha}")


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def one_sided_alpha(alpha: float) -> float:
    """The level ``α₁`` at which the two-sided formula gives a valid one-sided level-α bound."""
    _check_alpha(alpha)
    return 2.0 * alpha * _normal_cdf(math.sqrt(2.0 * math.log(1.0 / (2.0 * alpha))))


def tuned_rho(planned_samples: float, alpha: float = DEFAULT_ALPHA) -> float:
    """The mixture's ρ that makes the one-sided level-α margin tightest near ``planned_samples``."""
    if not planned_samples > 0:
        raise InvalidError(f"planned_samples must be > 0, got {planned_samples}")
    c = -2.0 * math.log(one_sided_alpha(alpha))
    return math.sqrt((c + math.log(1.0 + c)) / planned_samples)


def step_planned_samples(min_samples_per_arm: int, canary_share: float, *, relative: bool) -> float:
    """A step's planned sample size ``t*``: the observations at which it is first judged.

    ``relative`` (canary against stable, ``t`` counts both arms): the calls of both arms when
    the smaller one reaches ``min_samples_per_arm``; else (the canary alone)
    ``min_samples_per_arm``. ``canary_share`` is the step's configured share, in (0, 1).
    """
    if min_samples_per_arm < 1:
        raise InvalidError(f"min_samples_per_arm must be >= 1, got {min_samples_per_arm}")
    if not 0.0 < canary_share < 1.0:
        raise InvalidError(f"canary_share must be in (0, 1), got {canary_share}")
    if not relative:
        return float(min_samples_per_arm)
    return min_samples_per_arm / min(canary_share, 1.0 - canary_share)


def mixture_margin(t: float, rho: float, level: float) -> float:
    """The paper's unit-variance margin ``M_t`` after ``t`` observations, at level ``level``.

    ``level`` is used as given (pass :func:`one_sided_alpha` for a one-sided bound).
    """
    if t <= 0:
        return math.inf
    x = t * rho * rho
    return math.sqrt(2.0 * (x + 1.0) / (t * t * rho * rho) * math.log(math.sqrt(x + 1.0) / level))


def _sign(harm: Harm) -> float:
    if harm == "increase":
        return 1.0
    if harm == "decrease":
        return -1.0
    raise InvalidError(f"harm must be 'increase' or 'decrease', got {harm!r}")


def canary_bound(
    canary: Moments,
    *,
    harm: Harm = "increase",
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float = DEFAULT_PLANNED_SAMPLES,
) -> Bound:
    """One arm's mean with its one-sided CS bound: the absolute guardrails' test.

    "At most 5% of canary calls over 3 s" is breached when ``bound > 0.05`` for
    ``Moments.of_count(slow, calls)`` with ``harm="increase"``.
    """
    sign = _sign(harm)
    rho = tuned_rho(planned_samples, alpha)
    half = math.sqrt(canary.variance) * mixture_margin(canary.n, rho, one_sided_alpha(alpha))
    return Bound(canary.mean, canary.mean - sign * half, half)


def difference_bound(
    canary: Moments,
    stable: Moments,
    *,
    ratio: float = 1.0,
    harm: Harm = "increase",
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float = DEFAULT_PLANNED_SAMPLES,
) -> Bound:
    """``canary.mean − ratio·stable.mean`` and its one-sided CS bound: the relative guardrails.

    ``ratio=1`` compares the two rates; ``ratio=1.2`` with ``harm="increase"`` asks whether the
    canary's rate is proven more than 20% above stable's (breach when ``bound > 0``).
    """
    sign = _sign(harm)
    if not ratio > 0:
        raise InvalidError(f"ratio must be > 0, got {ratio}")
    rho = tuned_rho(planned_samples, alpha)
    estimate = canary.mean - ratio * stable.mean
    if canary.n == 0 or stable.n == 0:
        return Bound(estimate, -sign * math.inf, math.inf)
    total = canary.n + stable.n
    var = canary.variance / canary.n + ratio * ratio * stable.variance / stable.n
    half = math.sqrt(var * total) * mixture_margin(total, rho, one_sided_alpha(alpha))
    return Bound(estimate, estimate - sign * half, half)


def chi2_sf_1df(x: float) -> float:
    """``P(χ²₁ > x)``, the chi-square survival function with one degree of freedom."""
    if x <= 0:
        return 1.0
    return math.erfc(math.sqrt(x / 2.0))


@dataclass(frozen=True)
class SrmResult:
    """Pearson's chi-square test of the units per arm against the configured canary share.

    ``canary_calls`` and ``stable_calls`` are always the arms' calls; ``unit`` says what was
    tested: ``"users"`` (then ``canary_users`` and ``stable_users`` hold the counts) or
    ``"calls"``. ``observed_canary_share``, ``chi2`` and ``p_value`` are the tested unit's.
    ``clients`` is how many SDK clients counted users (0 when calls were tested): the users
    tested are those of the one that counted the most.
    """

    canary_calls: int
    stable_calls: int
    expected_canary_share: float
    observed_canary_share: float
    chi2: float
    p_value: float
    unit: Literal["users", "calls"] = "calls"
    canary_users: int | None = None
    stable_users: int | None = None
    clients: int = 0


def split_text(srm: Mapping[str, Any]) -> str:
    """A sample-ratio test's counts and shares in words, in the unit it tested (users; calls
    for a decision without users: older SDKs, or decisions stored before users were counted,
    which have no ``unit``): ``1300 canary / 8700 stable users (13.00% canary, configured
    10.00%)``. ``srm`` is a :class:`SrmResult` as JSON (a decision's ``srm``); the release
    status command, the dashboard and the guard's own hold reason all word it so.
    """
    if srm.get("unit") == "users":
        counts = f"{srm['canary_users']} canary / {srm['stable_users']} stable users"
        if (srm.get("clients") or 0) > 1:
            counts += f" (of the SDK client that met the most, of {srm['clients']})"
    else:
        counts = f"{srm['canary_calls']} canary / {srm['stable_calls']} stable calls"
    return (
        f"{counts} ({srm['observed_canary_share']:.2%} canary,"
        f" configured {srm['expected_canary_share']:.2%})"
    )


def srm_test(
    canary_calls: int,
    stable_calls: int,
    canary_share: float,
    *,
    canary_users: int | None = None,
    stable_users: int | None = None,
    clients: int = 1,
) -> SrmResult:
    """Whether the observed split fits the configured ``canary_share`` (0 < share < 1).

    Tested on users when both user counts are given (one SDK client's of ``clients``), else on
    calls.
    """
    if not 0.0 < canary_share < 1.0:
        raise InvalidError(f"canary_share must be in (0, 1), got {canary_share}")
    counts = (canary_calls, stable_calls, canary_users or 0, stable_users or 0)
    if min(counts) < 0:
        raise InvalidError(f"call and user counts must be >= 0, got {counts}")
    unit: Literal["users", "calls"] = "calls"
    canary, stable = canary_calls, stable_calls
    if canary_users is not None and stable_users is not None:
        unit, canary, stable = "users", canary_users, stable_users
    else:
        canary_users = stable_users = None
        clients = 0
    total = canary + stable
    share, chi2 = 0.0, 0.0
    if total:
        expect_c = total * canary_share
        expect_s = total - expect_c
        share = canary / total
        chi2 = (canary - expect_c) ** 2 / expect_c + (stable - expect_s) ** 2 / expect_s
    return SrmResult(
        canary_calls,
        stable_calls,
        canary_share,
        share,
        chi2,
        chi2_sf_1df(chi2),
        unit,
        canary_users,
        stable_users,
        clients,
    )
