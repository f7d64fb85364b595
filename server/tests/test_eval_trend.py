"""The golden-set trend and the regression alarm, against the real flag server.

Runs with known scores are stored through the server's HTTP API (create, results, finish), as
``vibe eval run`` stores them; the trend, the alarm, ``vibe release status`` and the guard are
then read back from the real server (SQLite and PostgreSQL) and its guard loop.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server._eval.alarm import ALPHA, MIN_ANSWERS, check_run, drop_bound, regression
from vibesdk_server._eval.summary import wilson_interval
from vibesdk_server._eval.trend import trend
from vibesdk_server.testing import FlagServer

from vibesdk.testing import make_flag

FLAG = "vibethinker"
Vibe = Callable[..., tuple[int, str, str]]


def _scores(right: int, n: int) -> list[float]:
    return [1.0] * right + [0.0] * (n - right)


def store_run(
    server: FlagServer, scores: dict[str, Sequence[float]], *, set_digest: str = "sha256:set-a"
) -> dict[str, Any]:
    """One finished run with these answers' scores per variant, through the HTTP API."""
    return server.store_eval_run(FLAG, scores, set_digest=set_digest)


def get_trend(server: FlagServer, **params: Any) -> dict[str, Any]:
    response = server.admin_request(
        "GET",
        f"/v1/admin/environments/{server.environment}/eval-trend",
        params={"flag": FLAG, **params},
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _regression(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["variant"]: c for c in run["regression"]}


# -- the trend -----------------------------------------------------------------------------------
def test_the_trend_pools_a_days_runs_per_variant_with_their_interval(server: FlagServer) -> None:
    server.apply(make_flag(rollout_bps=0))
    store_run(server, {"stable": _scores(5, 10), "canary": _scores(8, 10)})
    store_run(server, {"stable": _scores(5, 10), "canary": _scores(6, 10)})
    store_run(server, {"canary": _scores(0, 10)}, set_digest="sha256:set-b")
    store_run(server, {"stable": _scores(4, 10), "canary": _scores(1, 10)})
    data = get_trend(server, set_digest="sha256:set-a")
    (day,) = data["days"]
    assert data["set"] == {"name": "test-set.jsonl", "digest": "sha256:set-a"}
    assert data["other_set_runs"] == 1
    by_variant = {p["variant"]: p for p in data["points"]}
    assert set(by_variant) == {"stable", "canary"}
    canary = by_variant["canary"]
    assert (canary["day"], canary["n"], len(canary["runs"])) == (day, 30, 3)
    assert canary["score"] == pytest.approx(15 / 30)
    assert canary["ci95"] == pytest.approx(list(wilson_interval(15, 30) or ()))
    assert by_variant["stable"]["score"] == pytest.approx(14 / 30)
    assert canary["document_versions"] == [server.document().version]
    kinds = {m["kind"] for m in data["markers"]}
    assert "version" in kinds
    # Without set_digest: the newest run's set.
    assert get_trend(server)["set"]["digest"] == "sha256:set-a"


def test_trend_marks_rollout_changes_and_document_versions_from_the_audit_log() -> None:
    """Pure: days are UTC days of finishing; markers come from the runs and the audit log."""
    runs = [
        {
            "id": 1,
            "set_name": "s",
            "set_digest": "d",
            "variants": ["canary"],
            "document_version": 3,
            "finished_at": "2026-12-01T10:00:00.000Z",
        },
        {
            "id": 2,
            "set_name": "s",
            "set_digest": "d",
            "variants": ["canary"],
            "document_version": 4,
            "finished_at": "2026-12-02T23:59:59.000Z",
        },
        {**{"id": 3, "set_name": "s", "set_digest": "d", "variants": ["canary"]},
         "document_version": 4, "finished_at": None},
    ]  # fmt: skip
    rows = [
        *({"run_id": 1, "variant": "canary", "score": s} for s in _scores(9, 10)),
        *({"run_id": 2, "variant": "canary", "score": s} for s in _scores(3, 10)),
        {"run_id": 3, "variant": "canary", "score": 0.0},
    ]
    audit = [
        {"at": "2026-11-30T00:00:00.000Z", "action": "rollout", "version": 2, "after": {}},
        {"at": "2026-12-02T08:00:00.000Z", "action": "rollout", "version": 4,
         "after": {"rollout_bps": 2500}},
        {"at": "2026-12-02T09:00:00.000Z", "action": "eval_run_start", "version": 4},
        {"at": "2026-12-02T09:30:00.000Z", "action": "prompt_add", "version": None},
        {"at": "2026-12-02T10:00:00.000Z", "action": "apply", "version": 5, "after": None},
    ]  # fmt: skip
    data = trend(runs, rows, audit)
    assert data["days"] == ["2026-12-01", "2026-12-02"]
    assert [(p["day"], p["score"], p["n"]) for p in data["points"]] == [
        ("2026-12-01", 0.9, 10),
        ("2026-12-02", 0.3, 10),
    ]
    assert [(m["day"], m["kind"], m["label"]) for m in data["markers"]] == [
        ("2026-12-01", "version", "runs use v3"),
        ("2026-12-02", "rollout", "rollout v4 (25%)"),
        ("2026-12-02", "document", "apply v5"),
        ("2026-12-02", "version", "runs use v4"),
    ]
    assert trend([], []) == {
        "set": None,
        "variants": [],
        "days": [],
        "points": [],
        "markers": [],
        "other_set_runs": 0,
    }


def test_vibe_eval_trend_prints_a_table_json_and_a_real_png(
    server: FlagServer, vibe: Vibe, tmp_path: Path
) -> None:
    PIL = pytest.importorskip("PIL.Image")
    server.apply(make_flag(rollout_bps=0))
    store_run(server, {"stable": _scores(5, 10), "canary": _scores(7, 10)})
    code, out, err = vibe("eval", "trend", FLAG)
    assert code == 0, err
    assert "golden-set score of 'vibethinker'" in out
    assert "0.70" in out
    assert "0.50" in out
    code, out, err = vibe("eval", "trend", FLAG, "--json")
    assert code == 0, err
    assert json.loads(out) == get_trend(server)
    png = tmp_path / "trend.png"
    code, out, err = vibe("eval", "trend", FLAG, "--png", str(png))
    assert code == 0, err
    assert out.startswith(f"wrote {png} (1 day(s), 2 variant(s))")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with PIL.open(io.BytesIO(data)) as image:
        image.verify()
    with PIL.open(io.BytesIO(data)) as image:
        assert image.size == (1000, 500)
        # Not a blank canvas: the lines and the shaded intervals are drawn.
        assert len(image.convert("RGB").getcolors(1_000_000) or ()) > 20
    code, out, err = vibe("eval", "trend", FLAG, "--png", str(tmp_path / "no" / "t.png"))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "does not exist" in err
    code, _, err = vibe("eval", "trend", FLAG, "--days", "0")
    assert code == 2
    assert "--days 0: give 1 to 366" in err


# -- the alarm -----------------------------------------------------------------------------------
def test_the_two_sample_test_matches_the_pooled_two_proportion_z_test() -> None:
    """12/20 against a baseline of 36/40: z by hand with the pooled proportion 48/60, so
    z = 0.3 / sqrt(0.8 x 0.2 x (1/20 + 1/40)) = 2.739 and one-sided p = 0.0031."""
    current, baseline = _scores(12, 20), _scores(36, 40)
    out = regression(current, baseline)
    p = 48 / 60
    se = (p * (1 - p) * (1 / 20 + 1 / 40)) ** 0.5
    assert out["drop"] == pytest.approx(0.3)
    assert out["se"] == pytest.approx(se)
    assert out["z"] == pytest.approx(0.3 / se)
    assert out["p_value"] == pytest.approx(0.0031, abs=1e-4)
    assert out["alarm"] is True
    assert drop_bound(out["drop"], out["se"]) > 0
    # Too few answers: no verdict, never an alarm.
    few = regression(_scores(0, MIN_ANSWERS - 1), baseline)
    assert (few["p_value"], few["alarm"]) == (None, False)
    # Nothing differs: no alarm.
    assert regression(_scores(10, 10), _scores(20, 20))["alarm"] is False


def test_the_alarm_stays_quiet_on_noise_about_as_often_as_alpha_says() -> None:
    """Runs of an unchanged 70% variant: at most about alpha of them ring."""
    import random

    rng = random.Random("noise")
    rang = 0
    trials = 400
    for _ in range(trials):
        draw = [float(rng.random() < 0.7) for _ in range(40)]
        base = [float(rng.random() < 0.7) for _ in range(200)]
        rang += regression(draw, base)["alarm"]
    assert rang / trials < 2 * ALPHA


def test_the_baseline_is_the_previous_runs_on_the_same_set_with_the_variant() -> None:
    run = {"id": 9, "set_digest": "a"}
    rows = [{"variant": "canary", "score": s} for s in _scores(2, 10)]
    previous = [
        ({"id": 8, "set_digest": "b"}, [{"variant": "canary", "score": 1.0}] * 10),
        ({"id": 7, "set_digest": "a"}, [{"variant": "stable", "score": 1.0}] * 10),
        *(
            ({"id": i, "set_digest": "a"}, [{"variant": "canary", "score": 1.0}] * 10)
            for i in range(6, 0, -1)
        ),
    ]
    (check,) = check_run(run, rows, previous)
    assert check["baseline_runs"] == [6, 5, 4, 3, 2]
    assert (check["baseline_n"], check["alarm"]) == (50, True)


def test_the_alarm_rings_on_a_real_drop_not_on_noise_and_is_audited_and_shown(
    server: FlagServer, vibe: Vibe
) -> None:
    server.apply(make_flag(rollout_bps=0))
    first = store_run(server, {"stable": _scores(10, 20), "canary": _scores(18, 20)})
    assert _regression(first)["canary"]["baseline_n"] == 0  # nothing to compare with yet
    assert _regression(first)["canary"]["alarm"] is False
    store_run(server, {"stable": _scores(11, 20), "canary": _scores(17, 20)})
    noise = store_run(server, {"stable": _scores(9, 20), "canary": _scores(16, 20)})
    assert {v: c["alarm"] for v, c in _regression(noise).items()} == {
        "canary": False,
        "stable": False,
    }
    drop = store_run(server, {"stable": _scores(10, 20), "canary": _scores(6, 20)})
    check = _regression(drop)["canary"]
    assert check["alarm"] is True
    assert check["baseline_runs"] == [drop["id"] - i for i in (1, 2, 3)]
    assert check["p_value"] < ALPHA
    assert _regression(drop)["stable"]["alarm"] is False

    entries = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment, "limit": 50}
    ).json()
    (raised,) = [e for e in entries if e["action"] == "eval_regression"]
    assert raised["actor"] == "eval"
    assert raised["flag_key"] == FLAG
    assert "canary's golden-set score fell from 0.85" in raised["reason"]
    assert raised["after"]["alarms"][0]["run_id"] == drop["id"]
    (alarm,) = get_trend(server)["alarms"]
    assert alarm["variant"] == "canary"

    # vibe release status shows it (and --json carries it).
    started = server.admin_request(
        "POST",
        f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release",
        json={"steps": [1000, 10_000]},
    )
    assert started.status_code == 201, started.text
    code, out, err = vibe("release", "status", FLAG)
    assert code == 0, err
    line = (
        "alarm: eval_regression: canary's golden-set score fell from 0.85 (baseline: 3 run(s),"
        f" 60 answers) to 0.30 in run {drop['id']} (20 answers), p "
    )
    assert line in out
    code, out, err = vibe("release", "status", FLAG, "--json")
    assert [a["variant"] for a in json.loads(out)["eval_alarms"]] == ["canary"]

    # A later run back at its level clears it.
    store_run(server, {"stable": _scores(10, 20), "canary": _scores(17, 20)})
    assert get_trend(server)["alarms"] == []
    code, out, err = vibe("release", "status", FLAG)
    assert "alarm:" not in out


# -- the guardrail -------------------------------------------------------------------------------
def _wait_release(server: FlagServer, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        release: dict[str, Any] = server.admin_request(
            "GET", f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release"
        ).json()
        if release["state"] == state:
            return release
        assert time.monotonic() < deadline, release
        time.sleep(0.2)


@pytest.mark.parametrize("action", ["rollback", "pause"])
def test_the_guard_acts_on_the_alarm_when_the_plan_says_so(server: FlagServer, action: str) -> None:
    plan = {"guardrails": {"eval_regression": {"action": action}}, "min_samples": 10_000}
    flag = make_flag(rollout_bps=0).model_dump(mode="json")
    server.apply({**flag, "release": plan})
    store_run(server, {"canary": _scores(18, 20)})  # before the release: the baseline
    started = server.admin_request(
        "POST", f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release", json={}
    )
    assert started.status_code == 201, started.text
    release = _wait_release(server, "running")
    deadline = time.monotonic() + 30
    while not release.get("decision"):  # the guard looks: no run in the step, it holds
        assert time.monotonic() < deadline
        time.sleep(0.2)
        release = _wait_release(server, "running")
    verdicts = {e["name"]: e["verdict"] for e in release["decision"]["evidence"]}
    assert verdicts["eval_regression"] == "insufficient_data"
    store_run(server, {"canary": _scores(17, 20)})  # a run in the step, no drop: still running
    store_run(server, {"canary": _scores(5, 20)})
    ended = _wait_release(server, "rolled_back" if action == "rollback" else "paused")
    assert "eval_regression: baseline - canary" in ended["state_reason"]
    assert server.document().flags[FLAG].rollout_bps == (0 if action == "rollback" else 100)
