"""Release plans: the ``release:`` section of a flags file, and the guardrails it can name.

The plan is applied with ``vibe apply`` against the real vibe-server (SQLite and PostgreSQL),
kept beside the flag, shown in diffs, never in the document SDKs fetch, and followed by
``vibe release start``. Each guardrail a plan can name is judged on step figures that should
breach it and on A/A figures that should not.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from vibesdk_server._guard.decide import Drop
from vibesdk_server._guard.plan import GUARDRAILS, guardrail_rules
from vibesdk_server._guard.release import default_guardrails, evaluate
from vibesdk_server.testing import FlagServer

import vibesdk
from vibesdk.testing import FakeBackend, make_flag

FLAG = "vibethinker"
Vibe = Callable[..., tuple[int, str, str]]
PLAN = {
    "steps": [10, 50, 100],
    "dwell": 5,
    "min_samples": 300,
    "guardrails": {
        "latency": {"threshold": 0.01},
        "fallbacks": "off",
        "output_length": {"threshold": 0.5, "action": "rollback"},
    },
}


def _flag_json(server: FlagServer) -> dict[str, Any]:
    """The flag as a file would declare it (its prompt embedded, as the server stores it)."""
    server.apply(make_flag(rollout_bps=0))
    flag: dict[str, Any] = server.document().flags[FLAG].model_dump(mode="json")
    return flag


def _write(path: Path, flag: dict[str, Any], release: Any = None) -> str:
    data = dict(flag)
    if release is not None:
        data["release"] = release
    path.write_text(yaml.safe_dump({"flags": [data]}, sort_keys=False), encoding="utf-8")
    return str(path)


def _release(vibe: Vibe) -> dict[str, Any]:
    """The flag's newest release, as ``vibe release status --json`` prints it."""
    code, out, err = vibe("release", "status", FLAG, "--json")
    assert code == 0, err
    release: dict[str, Any] = json.loads(out)
    return release


# -- the flags file -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("release", "line"),
    [
        ({"steps": [10, 5]}, "release.steps: must rise to 100, got [10, 5]"),
        ({"steps": [10, 50]}, "release.steps: must rise to 100, got [10, 50]"),
        (
            {"dwell": "soon"},
            "release.dwell: give minutes (e.g. 5) or a duration such as 90s, 5m or 1h, at most"
            " 30 days; got 'soon'",
        ),
        (
            {"min_samples": 0},
            "release.min_samples: must be a whole number of calls >= 1, got 0",
        ),
        (
            {"step": [10, 100]},
            "release: unknown key(s) step; use steps, dwell, min_samples, guardrails",
        ),
        (
            {"guardrails": {"latncy": {"threshold": 0.05}}},
            "release.guardrails: unknown guardrail(s) latncy; use attempt_errors, breakage,"
            " checks, errors, eval_regression, failed_attempts, fallbacks, feedback_score, latency,"
            " output_length, reports, review_score, slow_calls",
        ),
        (
            {"guardrails": {"latency": {"threshold": 5}}},
            "release.guardrails.latency.threshold: must be a share between 0 and 1"
            " (0.05 = 5%), got 5",
        ),
        (
            {"guardrails": {"review_score": {"threshold": 5}}},
            "release.guardrails.review_score.threshold: must be points of the 1..5 score,"
            " 0 to 4, got 5",
        ),
        (
            {"guardrails": {"errors": {"action": "stop"}}},
            "release.guardrails.errors.action: must be rollback or pause, got 'stop'",
        ),
        (
            {"guardrails": {"reports": {"treshold": 0.01}}},
            "release.guardrails.reports: unknown key(s) treshold; use threshold, action",
        ),
        (
            {"guardrails": {"eval_regression": {"threshold": 1}}},
            "release.guardrails.eval_regression.threshold: must be a score difference, at least"
            " 0 and below 1 (0.1 = 10 points), got 1",
        ),
        (
            {"guardrails": {"eval_regression": {"action": "halt"}}},
            "release.guardrails.eval_regression.action: must be rollback or pause, got 'halt'",
        ),
    ],
)
def test_a_bad_release_section_is_refused_with_one_line_and_nothing_applied(
    server: FlagServer, vibe: Vibe, tmp_path: Path, release: Any, line: str
) -> None:
    flag = _flag_json(server)
    version = server.document().version
    path = _write(tmp_path / "flags.yaml", {**flag, "rollout_bps": 500}, release)
    code, out, err = vibe("apply", path, "--yes")
    assert (code, out) == (2, "")
    assert err == f"vibe: {path}: flag {FLAG}: {line}\n"
    # The server refuses it on its own too (422, the same words), for callers of the API.
    response = server.admin_request(
        "POST",
        f"/v1/admin/environments/{server.environment}/apply",
        json={"flags": [{**flag, "release": release}]},
    )
    assert response.status_code == 422, response.text
    assert f"flag {FLAG}: {line}" in response.text
    assert server.document().version == version


@pytest.mark.parametrize(
    "text",
    [
        "flags:\n  - key: f\n    release: {steps: [10, 5]}\n",
        "flags:\n  f:\n    release: {steps: [10, 5]}\n",
        "- key: f\n  release: {steps: [10, 5]}\n",
    ],
    ids=["list", "mapping", "bare list"],
)
def test_every_shape_of_flags_file_has_its_release_sections_checked(text: str) -> None:
    from vibesdk_server._vibe.errors import CliError, ExitCode
    from vibesdk_server._vibe.files import parse_flag_text

    with pytest.raises(CliError) as caught:
        parse_flag_text(text, name="flags.yaml")
    assert caught.value.code == ExitCode.USAGE
    assert (
        caught.value.message == "flags.yaml: flag f: release.steps: must rise to 100, got [10, 5]"
    )


def test_a_release_section_applies_shows_in_the_diff_and_never_reaches_sdks(
    server: FlagServer, vibe: Vibe, tmp_path: Path
) -> None:
    """Dry run and apply show the plan as the flag's ``release``; it is versioned and audited;
    the document SDKs fetch has no trace of it, and a real SDK client takes that document."""
    flag = _flag_json(server)
    before = server.document().version
    path = _write(tmp_path / "flags.yaml", flag, PLAN)
    code, out, _ = vibe("apply", path, "--dry-run")
    assert code == 0
    assert f"flags.{FLAG}.release" in out
    assert server.document().version == before  # a dry run writes nothing
    code, out, _ = vibe("apply", path, "--yes")
    assert code == 0, out
    assert f"flags.{FLAG}.release" in out
    after = server.document().version
    assert after == before + 1
    assert vibe("apply", path, "--yes")[1].startswith("no changes")  # the same plan again
    raw = server.sdk_request("GET", "/v1/flags")
    assert raw.status_code == 200
    assert "release" not in raw.json()["flags"][FLAG]
    assert "output_length" not in raw.text
    with vibesdk.Client(server_url=server.url, sdk_key=server.sdk_key, cache_dir="") as client:
        assert client.wait_until_ready(timeout=15)
        assert client.assign(FLAG, "user-1").flag_version == after
    # Versioned: vibe diff between the versions shows it; audited with the apply.
    code, out, _ = vibe("diff", FLAG, str(before), str(after))
    assert code == 0
    assert f"flags.{FLAG}.release" in out
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    assert audit[0]["after"]["release"]["steps"] == [10, 50, 100]
    assert audit[0]["after"]["release"]["dwell_s"] == 300.0
    # Without the section the flag goes back to the defaults (the file is the truth).
    path = _write(tmp_path / "flags.yaml", flag)
    code, out, _ = vibe("apply", path, "--yes")
    assert code == 0
    assert f"flags.{FLAG}.release" in out
    assert server.document().version == after + 1


def test_release_start_follows_the_flags_plan_and_options_override_it(
    server: FlagServer, vibe: Vibe, tmp_path: Path
) -> None:
    flag = _flag_json(server)
    assert vibe("apply", _write(tmp_path / "flags.yaml", flag, PLAN), "--yes")[0] == 0
    plan_version = server.document().version
    code, out, _ = vibe("release", "start", FLAG, "--reason", "plan")
    assert code == 0, out
    assert "10% -> 50% -> 100%" in out
    assert "each needs 300 s and 300 calls per arm" in out
    assert f"plan: the flags file's release section (applied in version {plan_version})" in out
    assert server.document().flags[FLAG].rollout_bps == 1000
    release = _release(vibe)
    assert release["plan"]["source"] == "flags file"
    assert release["plan"]["guardrails"]["fallbacks"] == "off"
    code, out, _ = vibe("release", "status", FLAG)
    assert "plan: the flags file's release section" in out
    assert vibe("release", "abort", FLAG, "--reason", "again")[0] == 0
    code, out, _ = vibe("release", "start", FLAG, "--steps", "25,100", "--reason", "faster")
    assert code == 0, out
    assert "25% -> 100%" in out
    assert "each needs 300 s and 300 calls per arm" in out  # the rest from the plan
    assert "overridden by --steps" in out
    assert vibe("release", "abort", FLAG, "--reason", "again")[0] == 0
    # The guard judges the plan's guardrails: latency at 1%, no fallbacks rule, output length.
    deadline = time.monotonic() + 15
    vibe("release", "start", FLAG, "--reason", "watch")
    while not (_release(vibe).get("decision") or {}).get("evidence"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    evidence = {e["name"]: e for e in _release(vibe)["decision"]["evidence"]}
    assert set(evidence) == {
        "breakage",
        "latency",
        "slow_calls",
        "failed_attempts",
        "output_length:longer",
        "output_length:shorter",
    }
    assert evidence["latency"]["threshold"] == 0.01
    assert evidence["output_length:longer"]["action"] == "rollback"


def test_an_apply_without_a_release_section_keeps_the_defaults(
    server: FlagServer, vibe: Vibe, tmp_path: Path
) -> None:
    flag = _flag_json(server)
    path = _write(tmp_path / "flags.yaml", {**flag, "description": "no release section"})
    assert vibe("apply", path, "--yes")[0] == 0
    code, out, _ = vibe("release", "start", FLAG, "--reason", "defaults")
    assert code == 0, out
    assert "1% -> 5% -> 10% -> 25% -> 50% -> 100%" in out
    assert "each needs 120 s and 200 calls per arm" in out
    assert "plan: the defaults" in out
    release = _release(vibe)
    assert release["plan"] == {
        "source": "defaults",
        "version": None,
        "overrides": [],
        "guardrails": {},
    }


# -- the guardrails a plan can name ---------------------------------------------------------------
RELEASE = {
    "canary_variant": "canary",
    "stable_variant": "stable",
    "steps": [5000, 10_000],
    "step": 0,
    "step_started_s": 0.0,
    "min_dwell_s": 0.0,
    "min_samples": 200,
    "guardrails": None,
}


def _judge(
    guardrails: dict[str, Any], measured: dict[str, Any], drop: Drop | None = None
) -> tuple[str, dict[str, str]]:
    release = {**RELEASE, "plan": {"guardrails": guardrails}}
    decision = evaluate(release, measured, now=600.0, drop=drop)
    return decision.action, {e.name: e.verdict for e in decision.evidence}


def _arm(
    rng: random.Random,
    calls: int,
    *,
    failed: float = 0.0,
    errors: float = 0.0,
    slow: float = 0.0,
    reports: float = 0.0,
    tokens: tuple[int, int] = (100, 200),
    scores: tuple[int, ...] = (3, 4, 4, 5, 5),
    scored: int = 0,
) -> dict[str, Any]:
    """One arm's figures as ``measurements()`` gives them, drawn at random per call."""
    bounds = [1, 4, 16, 64, 256, 1024, 4096]
    counts = [0] * (len(bounds) + 1)
    total = 0
    for _ in range(calls):
        n = rng.randint(*tokens)
        total += n
        counts[next((i for i, b in enumerate(bounds) if n <= b), len(bounds))] += 1
    given = [rng.choice(scores) for _ in range(scored)]
    return {
        "calls": calls,
        "failed_attempts": sum(rng.random() < failed for _ in range(calls)),
        "slow_calls": sum(rng.random() < slow for _ in range(calls)),
        "errors": {"all_failed": sum(rng.random() < errors for _ in range(calls))},
        "output_tokens": {
            "count": calls,
            "sum": float(total),
            "histogram": {"bounds": bounds, "counts": counts},
        },
        "feedback_received": {
            "count": len(given),
            "sum": float(sum(given)),
            "sum_sq": float(sum(s * s for s in given)),
            "reports": sum(rng.random() < reports for _ in range(calls)),
        },
    }


ONLY = {
    "breakage": "off",
    "slow_calls": "off",
    "failed_attempts": "off",
    "fallbacks": "off",
    "checks": "off",
}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (canary's breaching figures, stable's, what A/A both arms get)
    "attempt_errors": ({"failed": 0.15}, {"failed": 0.01}, {"failed": 0.02}),
    "failed_attempts": ({"failed": 0.2}, {"failed": 0.01}, {"failed": 0.02}),
    "errors": ({"errors": 0.08}, {"errors": 0.01}, {"errors": 0.01}),
    "latency": ({"slow": 0.15}, {"slow": 0.01}, {"slow": 0.01}),
    # Both arms slow (an overloaded app) is no harm of the canary's: the relative rule holds.
    "slow_calls": ({"slow": 0.5}, {"slow": 0.3}, {"slow": 0.4}),
    "output_length": ({"tokens": (300, 600)}, {"tokens": (100, 200)}, {"tokens": (100, 200)}),
    "feedback_score": (
        {"scores": (1, 2, 3, 3, 4), "scored": 300},
        {"scored": 300},
        {"scored": 300},
    ),
    "reports": ({"reports": 0.06}, {"reports": 0.005}, {"reports": 0.005}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_new_guardrail_breaches_on_harm_and_not_on_a_a(name: str) -> None:
    bad, good, same = CASES[name]
    spec = {**ONLY, name: {}}
    rng = random.Random(f"{name} breach")
    action, verdicts = _judge(
        spec, {"canary": _arm(rng, 1000, **bad), "stable": _arm(rng, 1000, **good)}
    )
    assert action == GUARDRAILS[name].action, verdicts
    assert "breach" in verdicts.values()
    for seed in range(20):  # A/A: twenty steps of identical arms, none breaches
        rng = random.Random(f"{name} a/a {seed}")
        action, verdicts = _judge(
            spec, {"canary": _arm(rng, 1000, **same), "stable": _arm(rng, 1000, **same)}
        )
        assert action == "advance", (seed, verdicts)


def test_an_overloaded_app_slows_both_arms_and_only_the_absolute_latency_rule_rolls_back() -> None:
    """Both arms with 40% of calls over 3 s: the app is slow, not the canary. The default
    (relative) rule holds; the absolute P95 rule, still available, cannot tell."""
    rng = random.Random("overload")
    measured = {"canary": _arm(rng, 1000, slow=0.4), "stable": _arm(rng, 1000, slow=0.4)}
    action, verdicts = _judge({}, measured)
    assert (action, verdicts["slow_calls"]) == ("advance", "no_breach")
    action, verdicts = _judge({"latency": {}}, measured)
    assert (action, verdicts["latency"]) == ("rollback", "breach")


def test_output_length_breaches_a_shorter_canary_too() -> None:
    rng = random.Random("shorter")
    measured = {"canary": _arm(rng, 1000, tokens=(20, 60)), "stable": _arm(rng, 1000)}
    action, verdicts = _judge({**ONLY, "output_length": {}}, measured)
    assert action == "pause"
    assert verdicts == {"output_length:longer": "no_breach", "output_length:shorter": "breach"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_silence_never_advances_and_never_rolls_back_a_new_guardrail(name: str) -> None:
    """Calls but none of the guardrail's own observations (no scores, no token histogram):
    the step holds, saying why."""
    quiet = {"calls": 1000}
    action, verdicts = _judge({**ONLY, name: {}}, {"canary": quiet, "stable": quiet})
    if name in ("output_length", "feedback_score"):
        assert action == "hold"
        assert set(verdicts.values()) == {"insufficient_data"}
    else:  # zero events out of 1000 calls in both arms is data, and fine
        assert action == "advance"
    action, _ = _judge({**ONLY, name: {}}, {})
    assert action == "hold"


def test_the_eval_guardrail_acts_on_a_proven_drop_and_holds_on_silence() -> None:
    """``eval_regression`` judges the canary's golden-set Drop of the step (see
    test_eval_trend.py for the alarm itself and the guard acting on it end to end)."""
    quiet = {"canary": {"calls": 1000}, "stable": {"calls": 1000}}

    def judge(threshold: float, drop: Drop | None, action: str = "rollback") -> tuple[str, str]:
        spec = {**ONLY, "eval_regression": {"threshold": threshold, "action": action}}
        verdict, verdicts = _judge(spec, quiet, drop)
        return verdict, verdicts["eval_regression"]

    fell = Drop(0.3, 0.1, 20, 60, run_id=4)  # lower bound 0.3 - 1.645 x 0.1 = 0.136
    assert judge(0.0, fell) == ("rollback", "breach")
    assert judge(0.0, fell, "pause") == ("pause", "breach")
    assert judge(0.2, fell) == ("advance", "no_breach")  # within the tolerated drop
    assert judge(0.0, Drop(0.1, 0.1, 20, 60)) == ("advance", "no_breach")  # noise
    # No run in the step, or one without a verdict: never advances, never rolls back.
    assert judge(0.0, None) == ("hold", "insufficient_data")
    assert judge(0.0, Drop(None, 0.0, 5, 0)) == ("hold", "insufficient_data")
    # Judged before the traffic's own checks: an eval breach acts with no calls at all.
    release = {**RELEASE, "plan": {"guardrails": {**ONLY, "eval_regression": {}}}}
    decision = evaluate(release, {}, now=600.0, drop=fell)
    assert decision.action == "pause"
    assert "eval_regression: baseline - canary" in decision.reasons[0].message


def test_a_plan_without_guardrails_is_the_defaults_and_off_removes_one() -> None:
    assert guardrail_rules(None, ["refusal"]) == default_guardrails(["refusal"])
    assert [g.name for g in default_guardrails(["refusal"])] == [
        "breakage",
        "slow_calls",
        "failed_attempts",
        "fallbacks",
        "check:refusal",
    ]
    rules = guardrail_rules(
        {"slow_calls": "off", "failed_attempts": "off", "errors": {"threshold": 0.02}}, []
    )
    assert [(g.name, g.threshold) for g in rules] == [
        ("breakage", 0.5),
        ("errors", 0.02),
        ("fallbacks", 0.01),
    ]


# -- what the measurements keep for them -----------------------------------------------------------
def test_measurements_keep_failed_attempts_the_output_histogram_and_the_steps_feedback(
    db_url: str,
) -> None:
    """On SQLite and PostgreSQL: calls that were retried, fell back or raised, the output-token
    histogram, and the feedback and reports tables' scores and reports received since the step
    began."""
    from vibesdk_server._domain._otlp import Point
    from vibesdk_server._storage import open_store

    store = open_store(db_url)
    try:
        store.create_environment("prod", actor="t", reason=None)
        now = int(time.time()) // 10 * 10
        duration = "gen_ai.client.operation.duration"
        tokens = "gen_ai.client.token.usage"
        bounds = (1.0, 4.0, 16.0, 64.0, 256.0)
        out = "gen_ai.token.type=output"

        def point(metric: str, labels: str, n: int, total: float, buckets: Any) -> Point:
            hist_bounds = (3.0,) if metric == duration else bounds
            return Point(FLAG, "canary", now, metric, labels, n, total, hist_bounds, buckets)

        store.add_points(
            "prod",
            [
                point(duration, "vibesdk.fallback=false", 7, 7.0, (7, 0)),
                point(duration, "vibesdk.fallback=true", 2, 2.0, (2, 0)),
                point(duration, "error.type=all_failed,vibesdk.fallback=true", 1, 1.0, (1, 0)),
                # A failed attempt that a retry recovered from: answered, still a failed attempt.
                point(
                    duration, "vibesdk.attempt.failed=true,vibesdk.fallback=false", 4, 4.0, (4, 0)
                ),
                point(tokens, "gen_ai.token.type=input", 10, 90.0, (0, 0, 10, 0, 0, 0)),
                point(tokens, out, 10, 500.0, (0, 0, 0, 10, 0, 0)),
            ],
        )
        cohort = {"trace_id": "0" * 32, "flag_key": FLAG, "variant": "canary"}
        for score in (5, 3):
            store.add_feedback("prod", "k", {**cohort, "score": score})
        store.add_report("prod", "k", cohort)
        canary = store.measurements(environment="prod", flag_key=FLAG, since=now - 60)["canary"]
        assert canary["calls"] == 14
        assert canary["failed_attempts"] == 7
        assert canary["output_tokens"] == {
            "count": 10,
            "sum": 500.0,
            "histogram": {"bounds": list(bounds), "counts": [0, 0, 0, 10, 0, 0]},
        }
        assert canary["feedback_received"] == {
            "count": 2,
            "sum": 8.0,
            "sum_sq": 34.0,
            "reports": 1,
        }
        later = store.measurements(environment="prod", flag_key=FLAG, since=now + 3600)
        assert later == {}  # feedback from before the step is left out, like the calls
    finally:
        store.close()


def test_a_canary_answering_far_longer_is_caught_end_to_end(
    server: FlagServer, vibe: Vibe, tmp_path: Path
) -> None:
    """A real client, real exports: the plan's output_length guardrail pauses the release."""
    long = " ".join(f"word{i}" for i in range(300))
    with FakeBackend(default="a short answer") as stable, FakeBackend(default=long) as canary:
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0))
        flag = server.document().flags[FLAG].model_dump(mode="json")
        plan = {
            "steps": [50, 100],
            "dwell": 0,
            "min_samples": 80,  # the token histogram's buckets are wide: a bound needs calls
            "guardrails": {"output_length": {"threshold": 0.5}},
        }
        assert vibe("apply", _write(tmp_path / "f.yaml", flag, plan), "--yes")[0] == 0
        assert vibe("release", "start", FLAG, "--reason", "longer answers")[0] == 0
        with vibesdk.Client(
            server_url=server.url,
            sdk_key=server.sdk_key,
            cache_dir="",
            server_metrics_interval_s=1,
        ) as client:
            assert client.wait_until_ready(timeout=15)
            deadline = (
                time.monotonic() + 180
            )  # calls, not seconds, decide; a busy machine makes fewer
            i = 0
            while _release(vibe)["state"] == "running":
                assert time.monotonic() < deadline, json.dumps(_release(vibe).get("decision"))[
                    :3000
                ]
                client.chat(FLAG, f"user-{i}", [{"role": "user", "content": "hi"}])
                i += 1
                if i % 20 == 0:
                    time.sleep(0.2)
    release = _release(vibe)
    assert release["state"] == "paused", json.dumps(release["decision"]["evidence"])
    breached = [e for e in release["decision"]["evidence"] if e["verdict"] == "breach"]
    assert [e["name"] for e in breached] == ["output_length:longer"]
    assert json.dumps(release["plan"]["guardrails"]) == json.dumps(
        {"output_length": {"threshold": 0.5}}
    )


def test_a_database_from_before_plans_gets_the_release_plan_column(tmp_path: Path) -> None:
    """Opening a SQLite file whose releases table predates plans adds releases.plan."""
    import sqlite3

    from vibesdk_server._storage import open_store
    from vibesdk_server._storage._base import SCHEMA

    old = SCHEMA.replace("{ID}", "INTEGER PRIMARY KEY AUTOINCREMENT")
    old = old.replace("    decision_at TEXT,\n    plan TEXT\n", "    decision_at TEXT\n")
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(old)
        assert "plan" not in [r[1] for r in conn.execute("PRAGMA table_info(releases)")]
    store = open_store(db)
    try:
        store.create_environment("prod", actor="t", reason=None)
    finally:
        store.close()
    with sqlite3.connect(db) as conn:
        assert "plan" in [r[1] for r in conn.execute("PRAGMA table_info(releases)")]
