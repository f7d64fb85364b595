"""The guard's statistics: the one-sided confidence sequence, its tuning, and the SRM test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._guard.stats import (
    Moments,
    canary_bound,
    chi2_sf_1df,
    difference_bound,
    mixture_margin,
    one_sided_alpha,
    srm_test,
    step_planned_samples,
    tuned_rho,
)


def _paper_margin(t: float, rho: float, level: float) -> float:
    """The unit-variance margin of Waudby-Smith et al. (2021), written out independently."""
    return math.sqrt(
        (2 * (t * rho**2 + 1)) / (t**2 * rho**2) * math.log(math.sqrt(t * rho**2 + 1) / level)
    )


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_one_sided_level_is_twice_alpha_times_phi() -> None:
    """alpha 0.05 gives the one-sided level 2·0.05·Φ(sqrt(2·log 10)) ≈ 0.0984."""
    assert one_sided_alpha(0.05) == pytest.approx(0.1 * _phi(math.sqrt(2 * math.log(10))))
    assert one_sided_alpha(0.05) == pytest.approx(0.0984, abs=1e-4)


@pytest.mark.parametrize("t", [10, 100, 1_000, 10_000, 100_000, 1_000_000])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_one_sided_bound_keeps_the_half_normal_mixture_at_one_over_alpha(
    t: int, alpha: float
) -> None:
    """Where the one-sided bound is crossed, the lambda > 0 mixture martingale is >= 1/alpha."""
    rho = tuned_rho(10_000, alpha)
    level = one_sided_alpha(alpha)
    # S is the standardised sum t·(mean - mu)/sigma that just reaches the bound.
    s = t * mixture_margin(t, rho, level)
    v = t * rho * rho + 1
    two_sided = math.exp(rho * rho * s * s / (2 * v)) / math.sqrt(v)
    one_sided = 2 * _phi(rho * s / math.sqrt(v)) * two_sided
    assert one_sided >= 1 / alpha * (1 - 1e-9)


def test_tuned_rho_makes_the_margin_tightest_near_the_planned_size() -> None:
    """rho from the paper's closed form beats rho twice or half as large at t*."""
    level = one_sided_alpha(0.05)
    rho = tuned_rho(5_000, 0.05)
    best = mixture_margin(5_000, rho, level)
    assert best < mixture_margin(5_000, 2 * rho, level)
    assert best < mixture_margin(5_000, rho / 2, level)
    c = -2 * math.log(level)
    assert rho == pytest.approx(math.sqrt((c + math.log(1 + c)) / 5_000))


def test_a_step_is_planned_for_its_first_judgement() -> None:
    """The canary alone: its min calls; a difference: both arms' calls when the smaller arm
    reaches its min (200 per arm at 10% -> 2,000; at 50% -> 400; at 90% -> 2,000)."""
    assert step_planned_samples(200, 0.1, relative=False) == 200
    assert step_planned_samples(200, 0.1, relative=True) == pytest.approx(2_000)
    assert step_planned_samples(200, 0.5, relative=True) == pytest.approx(400)
    assert step_planned_samples(200, 0.9, relative=True) == pytest.approx(2_000)
    assert step_planned_samples(50, 0.01, relative=True) == pytest.approx(5_000)


def test_a_step_tuned_sequence_proves_gross_harm_at_the_gate_and_stays_close_later() -> None:
    """40 of 100 canary calls over 3 s (the limit 5%): proven when tuned to 100 calls, not
    when tuned to 10,000; far from t* the step-tuned margin is only a little wider than the
    best one there (at most 25% at 100·t*, 35% at 1,000·t*)."""
    slow = Moments.of_count(40, 100)
    assert canary_bound(slow, planned_samples=100).bound > 0.05
    assert canary_bound(slow, planned_samples=10_000).bound < 0.05
    level = one_sided_alpha(0.05)
    for t, wider in ((1_000, 1.25), (10_000, 1.25), (100_000, 1.35)):
        step = mixture_margin(t, tuned_rho(100), level)
        best = mixture_margin(t, tuned_rho(t), level)
        assert best <= step <= wider * best


def test_canary_bound_is_the_papers_formula_on_a_simulated_proportion() -> None:
    """A simulated 5% proportion: bound = mean - s·M_t, M_t computed from the paper directly."""
    rng = np.random.default_rng(7)
    draws = rng.random(4_000) < 0.05
    events, n = int(draws.sum()), draws.size
    got = canary_bound(Moments.of_count(events, n), alpha=0.05, planned_samples=10_000)
    mean = events / n
    sd = math.sqrt(mean * (1 - mean))
    expected = mean - sd * _paper_margin(n, tuned_rho(10_000, 0.05), one_sided_alpha(0.05))
    assert got.estimate == pytest.approx(mean)
    assert got.bound == pytest.approx(expected, rel=1e-12)
    # The CS is wider than the fixed-n 95% one-sided interval: that width buys peeking.
    assert got.bound < mean - 1.645 * sd / math.sqrt(n)


def test_difference_bound_uses_both_arms_variance_over_all_calls() -> None:
    """Canary - ratio·stable: half-width sqrt(N·(s_c²/n_c + r²·s_s²/n_s))·M_N."""
    c, s = Moments.of_count(60, 1_000), Moments.of_count(180, 9_000)
    got = difference_bound(c, s, ratio=1.2, planned_samples=20_000)
    var = 0.06 * 0.94 / 1_000 + 1.2**2 * 0.02 * 0.98 / 9_000
    half = math.sqrt(var * 10_000) * _paper_margin(
        10_000, tuned_rho(20_000, 0.05), one_sided_alpha(0.05)
    )
    assert got.estimate == pytest.approx(0.06 - 1.2 * 0.02)
    assert got.bound == pytest.approx(0.06 - 1.2 * 0.02 - half)


def test_harm_decrease_gives_an_upper_bound() -> None:
    """For scores (harm = decrease) the bound sits above the estimate."""
    c = Moments(n=400, total=400 * 3.5, total_sq=400 * (3.5**2 + 1.0))
    s = Moments(n=400, total=400 * 4.0, total_sq=400 * (4.0**2 + 1.0))
    got = difference_bound(c, s, harm="decrease")
    assert got.estimate == pytest.approx(-0.5)
    assert got.bound == pytest.approx(-0.5 + got.half_width)
    assert got.bound < 0  # a drop of half a point on 400 per arm is proven


def test_a_arm_without_calls_proves_nothing() -> None:
    """An empty arm gives an infinite half-width, never a breach."""
    got = difference_bound(Moments.of_count(0, 0), Moments.of_count(5, 100))
    assert got.bound == -math.inf


def test_aa_releases_peeked_every_interval_stay_within_alpha() -> None:
    """A/A: 300 releases checked 120 times each are falsely rolled back at most ~alpha.

    A fixed-n interval peeked as often fails this (about a third of the releases).
    """
    rng = np.random.default_rng(11)
    releases, peeks, per_peek = 300, 120, 100
    canary = rng.binomial(per_peek, 0.1, size=(releases, peeks))
    n_c = canary.cumsum(axis=1)
    n_s = (per_peek - canary).cumsum(axis=1)
    e_c = rng.binomial(canary, 0.02).cumsum(axis=1)
    e_s = rng.binomial(per_peek - canary, 0.02).cumsum(axis=1)
    false = 0
    for r in range(releases):
        for k in range(peeks):
            if min(n_c[r, k], n_s[r, k]) < 100:
                continue
            b = difference_bound(
                Moments.of_count(int(e_c[r, k]), int(n_c[r, k])),
                Moments.of_count(int(e_s[r, k]), int(n_s[r, k])),
            )
            if b.bound > 0:
                false += 1
                break
    assert false / releases <= 0.05


@pytest.mark.parametrize(
    ("chi2", "p"),
    [(2.706, 0.10), (3.841, 0.05), (6.635, 0.01), (10.828, 0.001), (15.137, 0.0001)],
)
def test_chi2_survival_matches_the_tables(chi2: float, p: float) -> None:
    """P(chi2(1) > x) at the textbook critical values."""
    assert chi2_sf_1df(chi2) == pytest.approx(p, rel=2e-3)


def test_srm_flags_a_split_off_by_one_point() -> None:
    """1,100 / 8,900 against 10%: chi2 = 100²/1000 + 100²/9000 ≈ 11.1, p < 0.001."""
    got = srm_test(1_100, 8_900, 0.1)
    assert got.chi2 == pytest.approx(100**2 / 1_000 + 100**2 / 9_000)
    assert got.p_value < 0.001
    assert srm_test(1_000, 9_000, 0.1).p_value == pytest.approx(1.0)
    assert srm_test(0, 0, 0.1).p_value == 1.0


def test_srm_tests_users_when_given_and_keeps_the_calls() -> None:
    """With user counts the chi-square is on users; the calls stay in the result as they were."""
    got = srm_test(1_700, 8_300, 0.1, canary_users=110, stable_users=890)
    assert (got.unit, got.canary_users, got.stable_users) == ("users", 110, 890)
    assert (got.canary_calls, got.stable_calls) == (1_700, 8_300)
    assert got.chi2 == pytest.approx(10**2 / 100 + 10**2 / 900)
    assert got.observed_canary_share == pytest.approx(0.11)
    assert got.p_value > 0.2
    on_calls = srm_test(1_700, 8_300, 0.1)
    assert (on_calls.unit, on_calls.canary_users) == ("calls", None)
    assert on_calls.p_value < 1e-100


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: srm_test(1, 2, 1.0), "canary_share must be in (0, 1)"),
        (lambda: srm_test(1, 2, 0.1, canary_users=-1, stable_users=2), "counts must be >= 0"),
        (lambda: one_sided_alpha(0.7), "alpha must be in (0, 0.5)"),
        (lambda: tuned_rho(0), "planned_samples must be > 0"),
        (lambda: step_planned_samples(0, 0.1, relative=True), "min_samples_per_arm must be >= 1"),
        (lambda: step_planned_samples(200, 1.0, relative=True), "canary_share must be in (0, 1)"),
        (lambda: Moments.of_count(5, 3), "need 0 <= events <= trials"),
        (lambda: canary_bound(Moments.of_count(1, 3), harm="up"), "harm must be"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_says_what_to_fix(call: object, message: str) -> None:
    """Out-of-range settings raise InvalidError with a one-line message."""
    with pytest.raises(InvalidError, match=None) as info:
        call()  # type: ignore[operator]
    assert message in str(info.value)
    assert "\n" not in str(info.value)
