"""Guarded releases end to end: the real vibe-server (conftest's ``server``, on SQLite and
PostgreSQL, its guard loop looking every 0.5 s), a real vibesdk.Client exporting its
measurements every second, FakeBackend model servers.

A canary that fails is rolled back by the guard on its own (with an incident) while users keep
getting answers; a healthy one advances once its step has the samples and dwell it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server._guard import Count
from vibesdk_server._guard.release import aggregates, default_guardrails, evaluate, step_since
from vibesdk_server.testing import FlagServer

import vibesdk
from vibesdk.testing import FakeBackend, Reply, make_flag

FLAG = "vibethinker"
ASK = [{"role": "user", "content": "2+2?"}]


def _release(server: FlagServer) -> dict[str, Any]:
    response = server.admin_request(
        "GET", f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release"
    )
    assert response.status_code == 200, response.text
    release: dict[str, Any] = response.json()
    return release


def _start(server: FlagServer, **body: Any) -> dict[str, Any]:
    response = server.admin_request(
        "POST", f"/v1/admin/environments/{server.environment}/flags/{FLAG}/release", json=body
    )
    assert response.status_code == 201, response.text
    release: dict[str, Any] = response.json()
    return release


def _drive(
    client: vibesdk.Client, until: Callable[[], bool], *, timeout: float = 60.0
) -> list[vibesdk.ChatResult]:
    """Users call the model (each call must succeed) until ``until()`` or the timeout."""
    results = []
    deadline = time.monotonic() + timeout
    i = 0
    while not until():
        assert time.monotonic() < deadline, "the guard did not act in time"
        results.append(client.chat(FLAG, f"user-{i}", ASK))
        i += 1
        if i % 20 == 0:
            time.sleep(0.2)
    return results


def _client(server: FlagServer) -> vibesdk.Client:
    return vibesdk.Client(
        server_url=server.url,
        sdk_key=server.sdk_key,
        cache_dir="",
        streaming=True,
        server_metrics_interval_s=1,
    )


def test_a_failing_canary_is_rolled_back_by_the_guard_with_an_incident(
    server: FlagServer,
) -> None:
    """Canary 500s: the guard rolls back on its own, records an incident, users get stable.

    The canary logs every call (log_share 1): the incident keeps its last logged calls."""
    with (
        FakeBackend(default="stable answer") as stable,
        FakeBackend(default=Reply(status=500)) as canary,
    ):
        flag = make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0)
        data = flag.model_dump(mode="json")
        data["variants"]["canary"]["log_share"] = 1.0
        server.apply(vibesdk.Flag.model_validate(data))
        started = _start(server, steps=[5000, 10_000], min_dwell_s=0, min_samples_per_arm=20)
        with _client(server) as client:
            assert client.wait_until_ready(timeout=15)
            results = _drive(client, lambda: _release(server)["state"] != "running")
            assert all(r.text == "stable answer" for r in results)  # no user saw the failure
            release = _release(server)
            assert release["state"] == "rolled_back", release
            assert release["decision"]["action"] == "rollback"
            assert release["decision"]["reasons"][0]["code"] == "breakage"
            # The client follows the rollback: everyone on stable, no fallback needed.
            deadline = time.monotonic() + 15
            while client.assign(FLAG, "user-x").flag_version != server.document().version:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert server.document().flags[FLAG].rollout_bps == 0
            after = [client.chat(FLAG, f"later-{i}", ASK) for i in range(20)]
            assert {(r.variant, r.fallback) for r in after} == {("stable", False)}
    incidents = server.admin_request(
        "GET", "/v1/admin/incidents", params={"environment": server.environment}
    ).json()
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["release_id"] == started["id"]
    assert incident["actor"] == "guard"
    assert incident["to_version"] == incident["from_version"] + 1
    assert server.document().version == incident["to_version"]
    assert incident["decision"]["action"] == "rollback"
    assert incident["measurements"]["canary"]["calls"] >= 20
    # The scene: the canary's newest logged calls (each fell back to stable), with trace ids
    # of calls the users made.
    logged = incident["request_log"]
    assert 1 <= len(logged) <= 20
    canary_calls = {r.trace_id for r in results if r.fallback}
    assert {e["trace_id"] for e in logged} <= canary_calls
    assert {(e["variant"], e["answered_by"]) for e in logged} == {("canary", "stable")}
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    entry = next(a for a in audit if a["action"] == "release_rollback")
    assert entry["actor"] == "guard"
    assert entry["version"] == incident["to_version"]
    assert entry["evidence"]["decision"]["action"] == "rollback"


def test_a_healthy_canary_advances_a_step_once_samples_and_dwell_are_met(
    server: FlagServer,
) -> None:
    """No guardrail breached, enough calls per arm, dwell met: the guard raises the rollout."""
    with FakeBackend(default="stable answer") as stable, FakeBackend(default="new") as canary:
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0))
        _start(server, steps=[3000, 6000, 10_000], min_dwell_s=1, min_samples_per_arm=25)
        with _client(server) as client:
            assert client.wait_until_ready(timeout=15)
            results = _drive(client, lambda: _release(server)["step"] >= 1)
            assert {r.fallback for r in results} == {False}
    release = _release(server)
    assert server.document().flags[FLAG].rollout_bps in (6000, 10_000)
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    advance = next(a for a in audit if a["action"] == "release_advance" and a["version"])
    assert advance["actor"] == "guard"
    decision = advance["evidence"]["decision"]
    assert decision["action"] == "advance"
    assert decision["srm"]["canary_calls"] >= 25
    assert decision["srm"]["stable_calls"] >= 25
    # The client counted its users (vibesdk.exposures, one new user per call here): the
    # sample-ratio test counted them, not the calls.
    assert decision["srm"]["unit"] == "users"
    assert decision["srm"]["canary_users"] >= 1
    assert decision["srm"]["stable_users"] >= 1
    assert {e["verdict"] for e in decision["evidence"]} == {"no_breach"}
    assert release["state"] in ("running", "completed")


def test_a_hand_set_rollout_wins_and_pauses_the_release(server: FlagServer) -> None:
    """A person's rollout during a release stands; the guard pauses instead of overriding it."""
    server.apply(make_flag(rollout_bps=0))
    _start(server, steps=[1000, 5000], min_dwell_s=3600)
    server.rollout(FLAG, 200, reason="slower, by hand")
    deadline = time.monotonic() + 15
    while _release(server)["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    release = _release(server)
    assert release["state"] == "paused"
    assert "by hand" in release["state_reason"]
    assert server.document().flags[FLAG].rollout_bps == 200


def test_vibe_rollback_ends_the_release_in_progress(server: FlagServer) -> None:
    """The existing rollback sets rollout 0 and ends the release as rolled back, no incident."""
    server.apply(make_flag(rollout_bps=0))
    _start(server, steps=[1000, 5000], min_dwell_s=3600)
    server.rollback(FLAG, reason="by hand")
    release = _release(server)
    assert release["state"] == "rolled_back"
    assert "by hand" in release["state_reason"]
    assert server.document().flags[FLAG].rollout_bps == 0


# -- the mapping from measurements to decide()'s aggregates -------------------------------------
FIGURES = {
    "calls": 100,
    "slow_calls": 7,
    "errors": {"TimeoutError": 2},
    "fallbacks": {"timeout": 3, "http_500": 4},
    "quality_failures": {"refusal": 5},
}


def test_measurements_map_to_counts_out_of_the_arms_calls() -> None:
    """fallbacks (the canary's reasons), slow calls, errors and each check are counts out of
    calls."""
    arm = aggregates(FIGURES, ["refusal", "too_long"])
    assert arm.calls == 100
    counts = {k: (v.events, v.trials) for k, v in arm.metrics.items() if isinstance(v, Count)}
    assert counts == {
        "fallbacks": (7, 100),
        "slow_calls": (7, 100),
        "errors": (2, 100),
        "failed_attempts": (0, 100),
        "reports": (0, 100),
        "check:refusal": (5, 100),
        "check:too_long": (0, 100),
    }


def test_stables_fallbacks_are_its_calls_no_backend_answered() -> None:
    """Stable has nothing to fall back to: its calls whose attempts all failed raise
    (``all_failed``), and those are what the canary's fallbacks are compared with. Other errors
    (a caller that left) are not; on the canary's arm every fallback reason counts."""
    figures = {
        "calls": 100,
        "errors": {"all_failed": 6, "cancelled": 2},
        "fallbacks": {"timeout_queue": 3, "http_503": 4},
    }
    as_stable = aggregates(figures, [], stable=True).metrics["fallbacks"]
    as_canary = aggregates(figures, []).metrics["fallbacks"]
    assert (as_stable.events, as_stable.trials) == (13, 100)  # type: ignore[union-attr]
    assert (as_canary.events, as_canary.trials) == (7, 100)  # type: ignore[union-attr]


def _step_at_10_percent() -> dict[str, Any]:
    return {
        "canary_variant": "canary",
        "stable_variant": "stable",
        "steps": [1000, 5000],
        "step": 0,
        "step_started_s": 1000.0,
        "min_dwell_s": 60.0,
        "min_samples": 200,
        "guardrails": None,
    }


def test_an_app_that_fails_its_own_calls_does_not_roll_the_canary_back() -> None:
    """An overloaded app misses connect deadlines and fills its own connection queue for both
    arms alike: the canary's calls fall back, stable's raise. Judged against stable's unanswered
    calls, the canary's fallbacks are no worse; the same fallbacks with stable answering every
    call roll it back."""
    overloaded_canary = {
        "calls": 400,
        "fallbacks": {"timeout_connect": 60, "timeout_queue": 20},
        "failed_attempts": 80,
    }
    overloaded_stable = {"calls": 3600, "errors": {"all_failed": 720}, "failed_attempts": 720}
    decision = evaluate(
        _step_at_10_percent(),
        {"canary": overloaded_canary, "stable": overloaded_stable},
        now=1100.0,
    )
    assert decision.action != "rollback", decision.reasons
    assert not [r for r in decision.reasons if r.message.startswith("fallbacks")]

    broken = evaluate(
        _step_at_10_percent(),
        {"canary": overloaded_canary, "stable": {"calls": 3600}},
        now=1100.0,
    )
    assert broken.action == "rollback"
    assert [r for r in broken.reasons if r.message.startswith("fallbacks")], broken.reasons


def test_an_arm_with_no_measurements_is_zero_calls_not_an_error() -> None:
    arm = aggregates(None, ["refusal"])
    assert arm.calls == 0
    assert all(
        (c.events, c.trials) == (0, 0) if isinstance(c, Count) else c.n == 0
        for c in arm.metrics.values()
    )


def test_counts_from_separate_exports_are_capped_at_the_calls() -> None:
    """A fallback counter exported before its call's duration never makes events > trials."""
    arm = aggregates({"calls": 3, "fallbacks": {"timeout": 5}, "slow_calls": 0}, [])
    assert (arm.metrics["fallbacks"].events, arm.metrics["fallbacks"].trials) == (3, 3)  # type: ignore[union-attr]


def test_default_guardrails_and_one_per_failed_check() -> None:
    rules = {g.name: g for g in default_guardrails(["refusal"])}
    assert set(rules) == {"breakage", "slow_calls", "failed_attempts", "fallbacks", "check:refusal"}
    assert (rules["breakage"].threshold, rules["breakage"].min_trials) == (0.5, 20)
    assert rules["breakage"].metric == "failed_attempts"
    assert rules["failed_attempts"].kind == "relative"
    assert (rules["slow_calls"].kind, rules["slow_calls"].threshold) == ("relative", 0.05)
    assert rules["fallbacks"].kind == "relative"


def test_evaluate_judges_the_step_from_the_variants_measurements() -> None:
    """Half the canary's calls with a failed attempt (they fell back) is breakage; the SRM
    uses the step's share."""
    release = _step_at_10_percent()
    measured = {
        "canary": {"calls": 30, "fallbacks": {"http_500": 15}, "failed_attempts": 15},
        "stable": {"calls": 270},
    }
    decision = evaluate(release, measured, now=1010.0)
    assert decision.action == "rollback"
    assert decision.srm.expected_canary_share == 0.1
    assert decision.dwell_s == 10.0
    healthy = evaluate(release, {"canary": {"calls": 30}, "stable": {"calls": 270}}, now=1010.0)
    assert healthy.action == "hold"


def test_a_step_counts_only_intervals_that_began_inside_it() -> None:
    assert step_since(1000.0) == 1000
    assert step_since(1000.2) == 1001


def test_server_cli_refuses_a_guard_interval_that_is_not_positive(tmp_path: Path) -> None:
    from vibesdk_server._cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--db", str(tmp_path / "x.db"), "--guard-interval-s", "0"])


# -- the vibe release / vibe incident commands (conftest's ``vibe``) -------------------------------
def test_release_commands_start_pause_resume_promote_and_abort(
    server: FlagServer, vibe: Callable[..., tuple[int, str, str]]
) -> None:
    """Each command prints one line and exits 0; status --json's state follows them."""
    import json

    server.apply(make_flag(rollout_bps=0))
    code, out, _ = vibe(
        "release", "start", FLAG, "--steps", "10,50,100", "--dwell", "2m",
        "--min-samples", "500", "--reason", "new model",
    )  # fmt: skip
    assert code == 0, out
    assert "running at 10%" in out
    assert "10% -> 50% -> 100%" in out
    assert "120 s" in out
    assert server.document().flags[FLAG].rollout_bps == 1000

    def state() -> str:
        code, out, _ = vibe("release", "status", FLAG, "--json")
        assert code == 0
        value: str = json.loads(out)["state"]
        return value

    assert state() == "running"
    deadline = time.monotonic() + 15  # the guard looks and records why it holds
    while "too_few_samples" not in vibe("release", "status", FLAG, "--json")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    code, out, _ = vibe("release", "status", FLAG)
    assert code == 0
    assert "running, step 1 of 3 at 10%" in out
    assert "GUARDRAIL" in out
    assert "breakage" in out
    assert "insufficient_data" in out
    assert "split: 0 canary / 0 stable calls (0.00% canary, configured 10.00%)" in out
    assert "next: hold" in out
    assert vibe("release", "pause", FLAG, "--reason", "lunch")[:2] == (
        0,
        f"release {_release(server)['id']} of {FLAG}: paused, rollout 10%\n",
    )
    assert state() == "paused"
    assert vibe("release", "resume", FLAG, "--reason", "back")[0] == 0
    assert state() == "running"
    code, out, _ = vibe("release", "promote", FLAG, "--reason", "looks fine")
    assert (code, "running, rollout 50%" in out) == (0, True)
    assert server.document().flags[FLAG].rollout_bps == 5000
    code, out, _ = vibe("release", "abort", FLAG, "--reason", "changed our mind")
    assert (code, "rolled_back, rollout 0%" in out) == (0, True)
    assert state() == "rolled_back"
    assert server.document().flags[FLAG].rollout_bps == 0
    audit = server.admin_request(
        "GET", "/v1/admin/audit", params={"environment": server.environment}
    ).json()
    actions = [a["action"] for a in audit if a["action"].startswith("release_")]
    assert actions == [
        "release_abort", "release_promote", "release_resume", "release_pause", "release_start",
    ]  # fmt: skip


def test_release_command_errors_have_exit_codes_and_one_line(
    server: FlagServer, vibe: Callable[..., tuple[int, str, str]]
) -> None:
    """No release: 5; a second start: 3 (conflict); bad steps or dwell: 2, nothing sent."""
    server.apply(make_flag(rollout_bps=0))
    code, _, err = vibe("release", "status", FLAG)
    assert code == 5
    assert "vibe release start" in err
    assert err.count("\n") == 1
    assert vibe("release", "pause", FLAG, "--reason", "x")[0] == 5
    for bad in ("50,10", "10,,50", "0.001", "150"):
        code, _, err = vibe("release", "start", FLAG, "--steps", bad)
        assert code in (1, 2), (bad, err)
        assert err.count("\n") == 1, err
    code, _, err = vibe("release", "start", FLAG, "--dwell", "two minutes")
    assert code == 2
    assert "90s, 2m or 1h" in err
    assert server.document().flags[FLAG].rollout_bps == 0
    assert vibe("release", "start", FLAG, "--steps", "10,100")[0] == 0
    code, _, err = vibe("release", "start", FLAG)
    assert code == 3
    assert "already has a running release" in err
    code, _, err = vibe("release", "start", "nope")
    assert code == 5
    assert "does not exist" in err


def test_incident_commands_list_and_show(
    server: FlagServer, vibe: Callable[..., tuple[int, str, str]]
) -> None:
    """incident list says when there is none; show prints the decision table; 5 when unknown."""
    import json

    assert vibe("incident", "list") == (
        0,
        f"no incidents in environment {server.environment!r}\n",
        "",
    )
    assert vibe("incident", "show", "999999")[0] == 5
    with FakeBackend(default=Reply(status=500)) as canary, FakeBackend(default="ok") as stable:
        server.apply(make_flag(stable_url=stable.url, canary_url=canary.url, rollout_bps=0))
        _start(server, steps=[5000, 10_000], min_dwell_s=0, min_samples_per_arm=20)
        with _client(server) as client:
            assert client.wait_until_ready(timeout=15)
            _drive(client, lambda: _release(server)["state"] != "running")
    code, out, _ = vibe("incident", "list")
    assert code == 0
    assert "guard" in out
    assert FLAG in out
    incident_id = json.loads(vibe("incident", "list", "--json")[1])[0]["id"]
    code, out, _ = vibe("incident", "show", str(incident_id))
    assert code == 0
    assert f"incident {incident_id}" in out
    assert "rolled back by guard" in out
    assert "breakage" in out
    assert "breach" in out
    shown = json.loads(vibe("incident", "show", str(incident_id), "--json")[1])
    assert shown["decision"]["action"] == "rollback"


@pytest.mark.postgres
def test_one_replica_leads_the_guard_and_another_takes_over_when_it_dies(
    postgres_schema: str, flag_server_factory: Callable[..., Any]
) -> None:
    """Two replicas: one holds the guard's advisory lock; SIGKILL it and the other guards."""
    a = flag_server_factory(postgres_schema, guard_interval_s=0.3)
    b = flag_server_factory(
        postgres_schema, guard_interval_s=0.3, admin_token=a.admin_token, sdk_key=a.sdk_key
    )
    leads = "this replica leads the guard loop"

    def leaders() -> list[Any]:
        return [s for s in (a, b) if s.process is not None and leads in s.log_tail(400)]

    deadline = time.monotonic() + 15
    while not leaders():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.5)  # several ticks: the other replica must not lead too
    assert len(leaders()) == 1
    leader = leaders()[0]
    other = b if leader is a else a
    leader.kill()
    other.apply(make_flag(rollout_bps=0))
    _start(other, steps=[1000, 5000], min_dwell_s=3600)
    other.rollout(FLAG, 300, reason="by hand")  # only a guard that runs pauses the release
    deadline = time.monotonic() + 15
    while _release(other)["state"] == "running":
        assert time.monotonic() < deadline, other.log_tail()
        time.sleep(0.1)
    assert leads in other.log_tail(400)
    assert _release(other)["state"] == "paused"


def test_a_database_from_before_releases_gets_the_audit_evidence_column(tmp_path: Path) -> None:
    """Opening an older SQLite file adds audit.evidence; its audit rows read back with None."""
    import sqlite3

    from vibesdk_server._storage import open_store

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,"
            " actor TEXT NOT NULL, action TEXT NOT NULL, environment TEXT, flag_key TEXT,"
            " flags TEXT NOT NULL, reason TEXT, version BIGINT, before TEXT, after TEXT)"
        )
        conn.execute(
            "INSERT INTO audit (at, actor, action, flags) VALUES ('2026-01-01', 'old', 'x', '[]')"
        )
    store = open_store(db)
    try:
        store.create_environment("prod", actor="new", reason=None)
        rows = store.audit(environment=None, limit=10)
    finally:
        store.close()
    assert [(r["actor"], r["evidence"]) for r in rows] == [("new", None), ("old", None)]


def test_the_split_is_worded_in_the_unit_it_was_tested_on() -> None:
    """Users when the SDKs counted them; calls for a decision without users (older SDKs or
    decisions stored before users were counted, which have no unit). `vibe release status`,
    the dashboard and the guard's hold reason all word it with this one function."""
    from vibesdk_server._guard.stats import split_text

    srm = {
        "canary_calls": 1_700,
        "stable_calls": 8_300,
        "expected_canary_share": 0.1,
        "p_value": 0.74,
    }
    users = {**srm, "unit": "users", "canary_users": 101, "stable_users": 899}
    assert split_text({**users, "observed_canary_share": 0.101}) == (
        "101 canary / 899 stable users (10.10% canary, configured 10.00%)"
    )
    assert split_text({**users, "observed_canary_share": 0.101, "clients": 8}).startswith(
        "101 canary / 899 stable users (of the SDK client that met the most, of 8) (10.10% canary"
    )
    assert split_text({**srm, "observed_canary_share": 0.17}).startswith(
        "1700 canary / 8300 stable calls (17.00% canary"
    )
