"""examples/async_service.py: AsyncClient against the real flag server and fake backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vibesdk_server.testing import FlagServer

from vibesdk.testing import FakeBackend, Reply, make_flag

from .examples_harness import load_example, users_in

service = load_example("async_service.py")


def test_the_service_answers_every_line_and_canary_failures_fall_back(
    flag_server: FlagServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every input line gets an answer line; the canary's 503s are answered by stable."""
    stable = FakeBackend(default=Reply(text="391"))
    canary = FakeBackend(default=Reply(status=503))
    canary_users = users_in("vibethinker", 1000, canary=True, count=3)
    stable_users = users_in("vibethinker", 1000, canary=False, count=5)
    with stable.serve() as stable_url, canary.serve() as canary_url:
        flag_server.apply(
            make_flag(
                stable_url=stable_url,
                canary_url=canary_url,
                rollout_bps=1000,
                fallback={"retries": 0, "breaker_failures": 100},
            )
        )
        monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
        monkeypatch.setenv("VIBESDK_SDK_KEY", flag_server.sdk_key)
        monkeypatch.setenv("VIBESDK_CACHE_DIR", str(tmp_path / "cache"))
        questions = tmp_path / "questions.jsonl"
        questions.write_text(
            "\n".join(
                json.dumps({"user_id": u, "question": "What is 17 * 23?"})
                for u in stable_users + canary_users
            )
        )
        assert service.main([str(questions), "--concurrency", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["user_id"] for r in rows] == stable_users + canary_users
    assert all(r["answer"] == "391" and r["variant"] == "stable" for r in rows)
    assert [r["fallback"] for r in rows] == [False] * 5 + [True] * 3
    assert {r["assigned_variant"] for r in rows[5:]} == {"canary"}
