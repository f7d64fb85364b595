"""The guard's decision for one step: every branch, its reasons and its evidence as plain data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from vibesdk_server._domain._errors import InvalidError
from vibesdk_server._guard import ArmAggregates, Count, Decision, Guardrail, Moments, decide

ERRORS = Guardrail("error rate", "relative", "failed_attempts", 0.0)
SLOW = Guardrail("p95 under 3 s", "absolute", "slow_calls", 0.05)
BROKEN = Guardrail("canary broken", "breakage", "failed_attempts", 0.5)
SCORE = Guardrail("feedback", "relative", "feedback_score", 0.0, action="pause", harm="decrease")


def _arm(
    calls: int, failed: int = 0, slow: int = 0, users: int = 0, **extra: Count | Moments
) -> ArmAggregates:
    metrics: dict[str, Count | Moments] = {
        "failed_attempts": Count(failed, calls),
        "slow_calls": Count(slow, calls),
        **extra,
    }
    return ArmAggregates(calls, metrics, users=users)


def _decide(
    canary: ArmAggregates,
    stable: ArmAggregates,
    guardrails: list[Guardrail] | None = None,
    **kw: Any,
) -> Decision:
    settings: dict[str, Any] = {
        "canary_share": 0.1,
        "min_samples_per_arm": 100,
        "dwell_s": 600.0,
        "min_dwell_s": 300.0,
    } | kw
    return decide(guardrails or [BROKEN, ERRORS, SLOW], canary, stable, **settings)


def _codes(d: Decision) -> list[str]:
    return [r.code for r in d.reasons]


def test_a_healthy_canary_advances_after_dwell_and_samples() -> None:
    """Same 2% errors, 1% slow, split as configured, dwell reached: advance."""
    d = _decide(_arm(1_000, 20, 10), _arm(9_000, 180, 90))
    assert d.action == "advance"
    assert _codes(d) == ["ready"]
    assert [e.verdict for e in d.evidence] == ["no_breach"] * 3


def test_dwell_not_reached_holds() -> None:
    """The same figures before the minimum dwell time hold the step."""
    d = _decide(_arm(1_000, 20, 10), _arm(9_000, 180, 90), dwell_s=120.0)
    assert d.action == "hold"
    assert _codes(d) == ["dwell_not_reached"]
    assert "120 s of 300 s" in d.reasons[0].message


@pytest.mark.parametrize(("canary_calls", "stable_calls"), [(0, 0), (50, 450), (99, 891)])
def test_too_few_samples_holds_and_never_judges(canary_calls: int, stable_calls: int) -> None:
    """Silence (no or few calls) holds: it neither advances nor rolls back, whatever the dwell."""
    canary = _arm(canary_calls, canary_calls // 2 if canary_calls < 20 else 0)
    d = _decide(canary, _arm(stable_calls), dwell_s=10_000.0)
    assert d.srm.p_value > 0.001
    assert d.action == "hold"
    assert _codes(d) == ["too_few_samples"]
    tested = [e for e in d.evidence if e.kind != "breakage"]
    assert all(e.verdict == "insufficient_data" and e.bound is None for e in tested)


def test_a_worse_canary_is_rolled_back() -> None:
    """6% errors against stable's 2%, 1,000 vs 9,000 calls: harm proven, roll back."""
    d = _decide(_arm(1_000, 60, 10), _arm(9_000, 180, 90))
    assert d.action == "rollback"
    assert _codes(d) == ["breach"]
    ev = next(e for e in d.evidence if e.name == "error rate")
    assert ev.verdict == "breach"
    assert ev.estimate == pytest.approx(0.04)
    assert ev.bound is not None
    assert 0 < ev.bound < 0.04
    assert (ev.n_canary, ev.n_stable) == (1_000, 9_000)
    assert d.reasons[0].message.startswith(
        "error rate: canary - stable failed_attempts 0.04 (bound"
    )
    assert "is past 0 with 1000 canary / 9000 stable samples" in d.reasons[0].message


def test_a_breach_rolls_back_even_before_the_dwell() -> None:
    """Harm proven early does not wait for the dwell time."""
    d = _decide(_arm(1_000, 60, 10), _arm(9_000, 180, 90), dwell_s=30.0)
    assert d.action == "rollback"


def test_a_small_difference_is_not_yet_harm() -> None:
    """2.5% vs 2% on 1,000 canary calls is not proven: no breach, the step advances."""
    d = _decide(_arm(1_000, 25, 10), _arm(9_000, 180, 90))
    assert d.action == "advance"


def test_absolute_guardrail_catches_slow_canary_calls() -> None:
    """P95 < 3 s as 'at most 5% over 3 s': 12% of 1,000 canary calls over 3 s breaches."""
    d = _decide(_arm(1_000, 20, 120), _arm(9_000, 180, 90))
    assert d.action == "rollback"
    ev = next(e for e in d.evidence if e.name == "p95 under 3 s")
    assert ev.verdict == "breach"
    assert ev.n_stable is None
    assert ev.bound is not None
    assert ev.bound > 0.05


def test_the_bound_is_tuned_to_the_steps_gate_so_gross_harm_is_proven_at_it() -> None:
    """18% of 100 canary calls over 3 s, stable's 0%: the guard's sequence (tuned to the step's
    100 calls per arm) proves both the absolute and the relative rule at the gate; the same
    figures judged with a sequence tuned to 10,000 calls do not yet."""
    relative = Guardrail("slower than stable", "relative", "slow_calls", 0.05)
    canary, stable = _arm(100, slow=18), _arm(900)
    d = _decide(canary, stable, [SLOW, relative])
    assert [e.verdict for e in d.evidence] == ["breach", "breach"]
    assert d.action == "rollback"
    wide = _decide(canary, stable, [SLOW, relative], planned_samples=10_000)
    assert [e.verdict for e in wide.evidence] == ["no_breach", "no_breach"]


def test_obvious_breakage_rolls_back_without_a_test() -> None:
    """>= 50% of >= 20 canary attempts failing rolls back, even under SRM and before samples."""
    d = _decide(_arm(20, 10), _arm(9_000, 180), dwell_s=5.0)
    assert d.srm.p_value < 0.001
    assert d.action == "rollback"
    assert _codes(d) == ["breakage"]
    ev = d.evidence[0]
    assert (ev.verdict, ev.estimate, ev.n_canary) == ("breach", 0.5, 20)
    assert d.reasons[0].message == (
        "canary broken: canary share failed_attempts 0.5 reaches 0.5 with 20 canary samples"
    )


def test_breakage_needs_its_minimum_attempts() -> None:
    """19 failed attempts out of 19 are not yet 'obvious': silence alone never rolls back."""
    d = _decide(_arm(19, 19), _arm(171, 3))
    assert d.action == "hold"
    assert d.evidence[0].verdict == "insufficient_data"


def test_breakage_rule_is_configurable() -> None:
    """A stricter rule (30% of 50, pausing) fires on 16 of 50 and pauses."""
    rule = Guardrail("strict", "breakage", "failed_attempts", 0.3, action="pause", min_trials=50)
    d = _decide(_arm(50, 16), _arm(450, 9), [rule])
    assert d.action == "pause"


def test_srm_stops_the_analysis() -> None:
    """1,300 canary calls where 10% of 10,000 was configured: hold with 'srm', even if harmful."""
    d = _decide(_arm(1_300, 100, 10), _arm(8_700, 170, 90))
    assert d.srm.p_value < 0.001
    assert d.action == "hold"
    assert _codes(d) == ["srm"]
    assert "sample ratio mismatch" in d.reasons[0].message


def test_srm_counts_users_so_a_few_busy_users_do_not_stop_the_analysis() -> None:
    """100 canary users of 1,000 (10%, as configured) made 1,700 of 10,000 calls: the calls'
    split is far off, the users' is not. The users are tested, and the step advances."""
    d = _decide(_arm(1_700, 34, 17, users=100), _arm(8_300, 166, 83, users=900))
    assert (d.srm.unit, d.srm.canary_users, d.srm.stable_users) == ("users", 100, 900)
    assert (d.srm.canary_calls, d.srm.stable_calls) == (1_700, 8_300)
    assert d.srm.observed_canary_share == pytest.approx(0.1)
    assert d.action == "advance", d.reasons
    assert "1700 canary / 8300 stable calls" in d.reasons[0].message


def test_srm_on_users_holds_when_the_users_split_is_off() -> None:
    """1,300 canary users of 10,000 where 10% was configured, calls evenly split: hold."""
    d = _decide(_arm(1_000, 20, 10, users=1_300), _arm(9_000, 180, 90, users=8_700))
    assert d.srm.unit == "users"
    assert d.srm.p_value < 0.001
    assert d.action == "hold"
    assert _codes(d) == ["srm"]
    assert "sample ratio mismatch: 1300 canary / 8700 stable users (13.00% canary" in (
        d.reasons[0].message
    )


def _workers(canary: int, stable: int, n: int) -> tuple[dict[str, int], dict[str, int]]:
    """``n`` SDK clients (workers behind round-robin routing) that each met the same users."""
    return {f"w{i}": canary for i in range(n)}, {f"w{i}": stable for i in range(n)}


def test_srm_reads_one_clients_users_so_round_robin_workers_do_not_hold_a_good_split() -> None:
    """Eight workers each met the same 2,000 users, 230 of them on the canary (11.5% where 10%
    is configured: p 0.025 on 2,000 users, no mismatch). Summed over the workers each user
    counts eight times and the chi-square is eight times too large (p 6e-10). The test reads
    one client's users, and the step advances."""
    canary, stable = _workers(230, 1_770, 8)
    d = _decide(
        ArmAggregates(1_000, _arm(1_000).metrics, users=8 * 230, users_by_client=canary),
        ArmAggregates(9_000, _arm(9_000).metrics, users=8 * 1_770, users_by_client=stable),
    )
    assert (d.srm.unit, d.srm.canary_users, d.srm.stable_users) == ("users", 230, 1_770)
    assert d.srm.clients == 8
    assert d.srm.p_value == pytest.approx(0.0253, abs=5e-4)
    assert d.action == "advance", d.reasons
    summed = _decide(_arm(1_000, users=8 * 230), _arm(9_000, users=8 * 1_770))
    assert (summed.srm.clients, _codes(summed)) == (1, ["srm"])  # what the sum would have said


def test_srm_on_the_client_that_met_the_most_still_holds_a_broken_split() -> None:
    """The client that met the most users is read (whichever arm they are in), and a split that
    is really off there holds, saying whose users were tested."""
    canary, stable = _workers(10, 90, 3)
    canary["busy"], stable["busy"] = 300, 1_700  # 15% where 10% is configured
    canary["canary-heavy"], stable["canary-heavy"] = 1_000, 0  # fewer users in all: not read
    d = _decide(
        ArmAggregates(1_000, _arm(1_000).metrics, users=1_330, users_by_client=canary),
        ArmAggregates(9_000, _arm(9_000).metrics, users=1_970, users_by_client=stable),
    )
    assert (d.srm.canary_users, d.srm.stable_users, d.srm.clients) == (300, 1_700, 5)
    assert _codes(d) == ["srm"]
    assert "300 canary / 1700 stable users (of the SDK client that met the most, of 5)" in (
        d.reasons[0].message
    )


def test_srm_counts_calls_when_no_sdk_counted_users() -> None:
    """Older SDKs send no user counts: the calls are tested, and the evidence says so."""
    d = _decide(_arm(1_300, 100, 10), _arm(8_700, 170, 90))
    assert (d.srm.unit, d.srm.canary_users, d.srm.stable_users) == ("calls", None, None)
    assert "1300 canary / 8700 stable calls" in d.reasons[0].message
    # Users in one arm only are a count too: no canary user at all is a mismatch.
    d = _decide(_arm(1_000, 20, 10), _arm(9_000, 180, 90, users=900))
    assert (d.srm.unit, d.srm.canary_users, _codes(d)) == ("users", 0, ["srm"])


def test_pause_action_pauses_and_rollback_wins_over_pause() -> None:
    """A breached 'pause' guardrail pauses; with a breached 'rollback' one too, it rolls back."""
    low = Moments(n=500, total=500 * 3.2, total_sq=500 * (3.2**2 + 1.0))
    high = Moments(n=500, total=500 * 4.0, total_sq=500 * (4.0**2 + 1.0))
    d = _decide(
        _arm(1_000, 20, 10, feedback_score=low),
        _arm(9_000, 180, 90, feedback_score=high),
        [ERRORS, SCORE],
    )
    assert d.action == "pause"
    ev = d.evidence[1]
    assert ev.estimate == pytest.approx(-0.8)
    assert ev.bound is not None
    assert ev.bound < 0
    d = _decide(
        _arm(1_000, 60, 10, feedback_score=low),
        _arm(9_000, 180, 90, feedback_score=high),
        [ERRORS, SCORE],
    )
    assert d.action == "rollback"
    assert _codes(d) == ["breach", "breach"]


def test_ratio_tolerance_allows_a_relative_margin() -> None:
    """'No more than 50% above stable': 2.5% vs 2% passes, 6% vs 2% breaches."""
    rule = Guardrail("errors +50%", "relative", "failed_attempts", 0.5, tolerance="ratio")
    assert _decide(_arm(5_000, 125), _arm(45_000, 900), [rule]).action == "advance"
    d = _decide(_arm(5_000, 300), _arm(45_000, 900), [rule])
    assert d.action == "rollback"
    ev = d.evidence[0]
    assert ev.estimate == pytest.approx(0.06 - 1.5 * 0.02)
    assert (ev.contrast, ev.limit) == ("canary - 1.5 x stable", 0.0)
    assert "canary - 1.5 x stable failed_attempts" in d.reasons[0].message


def test_a_sparse_metric_holds_until_it_has_enough_observations() -> None:
    """Only 5 canary feedback scores: that guardrail is not judged yet, so the step holds."""
    few = Moments(n=5, total=20.0, total_sq=82.0)
    many = Moments(n=80, total=320.0, total_sq=1_300.0)
    d = _decide(
        _arm(1_000, 20, 10, feedback_score=few),
        _arm(9_000, 180, 90, feedback_score=many),
        [ERRORS, SCORE],
    )
    assert d.action == "hold"
    assert _codes(d) == ["too_few_samples"]
    assert "feedback: 5 canary / 80 stable observations of feedback_score" in d.reasons[0].message


def test_decision_is_json_ready_plain_data() -> None:
    """to_dict() dumps with allow_nan=False and keeps the guardrails' order."""
    d = _decide(_arm(1_000, 60, 10), _arm(9_000, 180, 90))
    data = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert data["action"] == "rollback"
    assert [e["name"] for e in data["evidence"]] == ["canary broken", "error rate", "p95 under 3 s"]
    assert data["srm"]["p_value"] == pytest.approx(1.0)
    silent = _decide(_arm(0), _arm(0)).to_dict()
    json.dumps(silent, allow_nan=False)
    assert data["srm"]["unit"] == "calls"
    users = _decide(_arm(1_000, users=10), _arm(9_000, users=90)).to_dict()["srm"]
    assert (users["unit"], users["canary_users"], users["stable_users"]) == ("users", 10, 90)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Guardrail("x", "median", "m", 0.0),
            "kind must be relative, absolute, breakage or eval",
        ),  # type: ignore[arg-type]
        (lambda: Guardrail("x", "breakage", "m", 2.0), "a breakage threshold is a share"),
        (lambda: Guardrail("x", "absolute", "m", 0.1, tolerance="ratio"), "only applies to"),
        (lambda: Guardrail("x", "relative", "m", 0.1, action="stop"), "action must be"),  # type: ignore[arg-type]
        (lambda: Count(5, 3), "need 0 <= events <= trials"),
        (
            lambda: _decide(_arm(1_000), _arm(9_000), [Guardrail("s", "absolute", "latency", 1.0)]),
            "metric 'latency' is missing from the canary arm's aggregates",
        ),
        (lambda: _decide(_arm(1_000), _arm(9_000), [ERRORS, ERRORS]), "names must be unique"),
        (
            lambda: _decide(_arm(1_000), _arm(9_000), [Guardrail("b", "breakage", "crashes", 0.5)]),
            "metric 'crashes' is missing from the canary arm's aggregates",
        ),
        (
            lambda: _decide(
                _arm(1_000, feedback_score=Moments(1, 1.0, 1.0)),
                _arm(9_000),
                [Guardrail("b", "breakage", "feedback_score", 0.5)],
            ),
            "a breakage rule needs a Count (events out of trials), but 'feedback_score' is Moments",
        ),
        (lambda: _decide(_arm(1_000), _arm(9_000), canary_share=0.0), "canary_share must be"),
        (lambda: _decide(_arm(1_000), _arm(9_000), min_samples_per_arm=0), "min_samples_per_arm"),
        (lambda: ArmAggregates(10, users=-1), "users must be >= 0, got -1"),
        (
            lambda: ArmAggregates(10, users=1, users_by_client={"a": 2, "b": -1}),
            "users_by_client counts must be >= 0, got {'b': -1}",
        ),
    ],
)
def test_bad_input_says_what_to_fix(make: Any, message: str) -> None:
    """Bad guardrails and settings raise InvalidError with one line naming the problem."""
    with pytest.raises(InvalidError) as info:
        make()
    assert message in str(info.value)
    assert "\n" not in str(info.value)
