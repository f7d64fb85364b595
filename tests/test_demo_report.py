"""The demo's report: percentiles, per-variant and per-phase numbers, and their rendering."""

from __future__ import annotations

from vibesdk_server._vibe.demo_report import Flip, Outcome, Phase, percentile, render, summarize


def test_percentile_is_nearest_rank() -> None:
    """p50 and p95 pick an observed value by nearest rank; no values give None."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None


def _outcomes() -> list[Outcome]:
    return [
        Outcome(1, "u1", "stable", "stable", 1.0, feedback_score=4),
        Outcome(1, "u2", "stable", "stable", 2.0, quality_failures=("python_syntax",)),
        Outcome(1, "u3", "canary", "canary", 3.0, feedback_score=5),
        Outcome(2, "u4", "canary", "stable", 4.0, fallback=True, fallback_reason="connect"),
        Outcome(2, "u5", "unknown", "none", 9.0, error="HTTP 503"),
    ]


def test_summary_counts_per_assigned_variant() -> None:
    """Users, fallbacks, check failures and latencies are counted by the variant assigned."""
    phases = [Phase(1, "canary at 10%", 1000), Phase(2, "widened", 5000)]
    flips = [Flip("vibe rollout vibethinker 50%", 2, 0.5, 0.02)]
    s = summarize(_outcomes(), phases, flips)
    assert s["users"] == 5
    assert s["errors"] == 1
    assert s["fallbacks"] == 1
    assert s["check_failures"] == 1
    canary = s["variants"]["canary"]
    assert canary["users"] == 2
    assert canary["fallbacks"] == 1
    assert canary["fallback_reasons"] == {"connect": 1}
    assert canary["answered_by"] == 1
    assert s["variants"]["stable"]["answered_by"] == 3
    assert s["variants"]["stable"]["checks"] == {"python_syntax": 1}
    assert s["variants"]["stable"]["p50_s"] == 1.0
    assert [p["canary_users"] for p in s["phases"]] == [1, 1]
    assert s["flips"][0]["reach_total_s"] == 0.52


def test_render_shows_every_variant_phase_and_flip() -> None:
    """The rendered report names each phase, variant and flip."""
    phases = [Phase(1, "canary at 10%", 1000), Phase(2, "widened", 5000)]
    text = render(summarize(_outcomes(), phases, [Flip("vibe rollback vibethinker", 3, 0.4, None)]))
    assert "1. canary at 10%" in text
    assert "stable" in text
    assert "canary" in text
    assert "connect 1" in text
    assert "did not reach the app in time" in text
    assert "users who saw an error: 1 of 5" in text


def test_a_write_of_the_guard_is_reported_as_the_guards() -> None:
    """A flip by the guard is timed from its write, and the summary keeps who made it."""
    flips = [
        Flip("guard rollback", 4, 0.0, 0.038, actor="guard"),
        Flip("vibe rollout", 3, 0.4, 0.1),
    ]
    summary = summarize(_outcomes(), [Phase(1, "guarded release at 25%", 2500)], flips)
    assert [f["actor"] for f in summary["flips"]] == ["guard", "vibe"]
    text = render(summary)
    assert "`guard rollback`: the app served version 4 38 ms after the guard wrote it" in text
    assert "`vibe rollout`: the app served version 3 100 ms after the command returned" in text
