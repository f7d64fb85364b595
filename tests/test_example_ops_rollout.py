"""examples/ops_rollout.py: stepped rollout via the real `vibe` CLI, rollback on a guardrail."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from vibesdk_server.testing import FlagServer

from vibesdk.testing import make_flag

from .examples_harness import load_example

ops = load_example("ops_rollout.py")


def _span(at: float, *, seconds: float, fallback: bool = False, passed: bool = True) -> str:
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")

    return json.dumps(
        {
            "name": "chat vibethinker-1.5b",
            "start_time": iso(at - seconds),
            "end_time": iso(at),
            "attributes": {
                "feature_flag.key": "vibethinker",
                "feature_flag.result.variant": "canary",
                "vibesdk.fallback": fallback,
                "vibesdk.quality.passed": passed,
            },
        }
    )


@pytest.fixture
def ops_env(flag_server: FlagServer, monkeypatch: pytest.MonkeyPatch) -> FlagServer:
    flag_server.apply(make_flag(rollout_bps=0))
    flag_server.mark_good()
    monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", flag_server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", flag_server.environment)
    return flag_server


class FakeTime:
    def __init__(self) -> None:
        self.now = time.time()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_health_reads_the_canary_chat_spans(tmp_path: Path) -> None:
    """p95, fallback and check-failure rates come from the canary's chat spans after `since`."""
    traces = tmp_path / "spans.jsonl"
    now = time.time()
    lines = [_span(now - 100, seconds=9.0)]  # before the window
    lines += [_span(now + i, seconds=1.0 + i / 10) for i in range(8)]
    lines += [
        _span(now + 9, seconds=0.5, fallback=True),
        _span(now + 10, seconds=0.5, passed=False),
    ]
    traces.write_text("\n".join(lines) + "\n{not json", encoding="utf-8")
    health = ops.canary_health(traces, "vibethinker", since=now - 1)
    assert health.calls == 10
    assert health.p95_s == pytest.approx(1.7)
    assert health.fallback_rate == pytest.approx(0.1)
    assert health.check_failure_rate == pytest.approx(0.1)
    assert health.broken(ops.Guardrails(max_fallback_rate=0.05)).startswith("canary fallback rate")
    assert health.broken(ops.Guardrails(max_fallback_rate=0.2)) is None


def test_every_step_holds_and_is_marked_good(ops_env: FlagServer, tmp_path: Path) -> None:
    """Healthy canary: each step is rolled out with `vibe rollout` and marked good."""
    traces = tmp_path / "spans.jsonl"
    t = FakeTime()
    traces.write_text("\n".join(_span(t.now + 1, seconds=0.5) for _ in range(10)) + "\n")
    code = ops.run(
        "vibethinker",
        [5, 10],
        hold_s=10,
        check_every_s=5,
        guardrails=ops.Guardrails(),
        watch=lambda since: ops.canary_health(traces, "vibethinker", since - 5),
        clock=t.clock,
        sleep=t.sleep,
    )
    assert code == 0
    assert ops_env.document().flags["vibethinker"].rollout_bps == 1000
    history = ops_env.admin_request(
        "GET", f"/v1/admin/environments/{ops_env.environment}/history"
    ).json()
    assert [h["action"] for h in history[:4]] == ["mark_good", "rollout", "mark_good", "rollout"]


def test_a_broken_guardrail_rolls_back(ops_env: FlagServer, tmp_path: Path) -> None:
    """Slow canary answers: the script runs `vibe rollback` at once and exits 1."""
    traces = tmp_path / "spans.jsonl"
    t = FakeTime()
    traces.write_text("\n".join(_span(t.now + 1, seconds=4.0) for _ in range(10)) + "\n")
    code = ops.run(
        "vibethinker",
        [5, 10],
        hold_s=60,
        guardrails=ops.Guardrails(max_p95_s=3.0),
        watch=lambda since: ops.canary_health(traces, "vibethinker", since - 5),
        clock=t.clock,
        sleep=t.sleep,
    )
    assert code == 1
    assert ops_env.document().flags["vibethinker"].rollout_bps == 0
    last = ops_env.admin_request(
        "GET", f"/v1/admin/environments/{ops_env.environment}/history"
    ).json()[0]
    assert last["action"] == "rollback"
    assert "p95" in last["reason"]
