"""`vibe eval run` / `vibe eval history` against the real flag server (SQLite and PostgreSQL).

The variants' backends are real loopback servers (vibesdk.testing.FakeBackend) whose answers
are known: the canary answers every item of a tiny set right, stable answers every item wrong.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from vibesdk_server._eval.golden import load_set
from vibesdk_server._eval.runner import EVAL_UNIT, PIN_RULE, pin_variant
from vibesdk_server._eval.summary import summarize, wilson_interval
from vibesdk_server._vibe.main import main
from vibesdk_server.serving import find_llama_server, models, serve
from vibesdk_server.testing import FlagServer

import vibesdk
from vibesdk import ConfigError, Reason
from vibesdk.testing import (
    VIBETHINKER_SYSTEM_PROMPT,
    FakeBackend,
    InMemoryFlagSource,
    Reply,
    make_document,
    make_flag,
)

# Found the way vibe-serve finds them; missing on a developer's machine, the model test skips
# (tests/conftest.py makes a skip a failure under CI=true).
MISSING: str | None = None
try:
    find_llama_server()
    models.smollm2()
except ConfigError as exc:
    MISSING = str(exc)

TINY = Path(__file__).parent / "data" / "eval_tiny.jsonl"
ITEMS = load_set(TINY)
RIGHT = {
    # Reasoning before the answer (at least 40 characters): complete, as the scorer rates it.
    "add-small": "We add the two numbers: two plus three makes five, so the answer is \\boxed{5}.",
    "times": "Seven groups of six: 6 + 6 + 6 + 6 + 6 + 6 + 6 = 42, so the product is \\boxed{42}",
    "half": (
        "把一个完整的整体平均分成相等的两份每一份就是整体的一半"
        "用分数表示就是二分之一所以答案是 \\boxed{\\frac{1}{2}}。"
    ),
    "add-fn": "```python\ndef add(a, b):\n    return a + b\n```",
    "even-fn": "```python\ndef is_even(n):\n    return n % 2 == 0\n```",
}
WRONG = {
    "math": "I think it is \\boxed{0}.",
    "code": "```python\ndef add(a, b):\n    return 0\n\ndef is_even(n):\n    return None\n```",
}


def item_of(request: Mapping[str, Any]) -> Any:
    """The golden item whose prompt is in the request's last user message."""
    content = request["messages"][-1]["content"]
    return next(i for i in ITEMS if i.prompt in content)


def right_answer(request: Mapping[str, Any]) -> str:
    return RIGHT[item_of(request).id]


def wrong_answer(request: Mapping[str, Any]) -> str:
    return WRONG[item_of(request).kind]


@pytest.fixture
def right() -> Iterator[FakeBackend]:
    fake = FakeBackend(default=Reply(text=right_answer), model="canary-model")
    fake.start()
    yield fake
    fake.close()


@pytest.fixture
def wrong() -> Iterator[FakeBackend]:
    fake = FakeBackend(default=Reply(text=wrong_answer), model="stable-model")
    fake.start()
    yield fake
    fake.close()


@pytest.fixture
def env(server: FlagServer, monkeypatch: pytest.MonkeyPatch) -> FlagServer:
    """The `server` environment selected for `vibe` through VIBESDK_* variables."""
    monkeypatch.setenv("VIBESDK_SERVER_URL", server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", server.environment)
    return server


@pytest.fixture
def flag(env: FlagServer, right: FakeBackend, wrong: FakeBackend) -> dict[str, Any]:
    """Flag vibethinker on the server: canary (rollout 0) answers right, stable wrong."""
    return env.apply(
        make_flag(stable_url=wrong.url, canary_url=right.url, rollout_bps=0, enabled=False)
    )


def vibe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def vibe_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = vibe(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_canary_right_and_stable_wrong_show_in_json_and_table(
    capsys: pytest.CaptureFixture[str],
    env: FlagServer,
    flag: dict[str, Any],
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """--json is one object with per-variant math/code figures; the table shows the same."""
    report = vibe_json(capsys, "eval", "run", "vibethinker", "--set", str(TINY))
    version = env.document().version
    assert report["flag"] == "vibethinker"
    assert report["document_version"] == version == flag["version"]
    assert list(report["variants"]) == ["stable", "canary"]
    canary, stable = report["variants"]["canary"], report["variants"]["stable"]
    assert canary["math"]["n"] == stable["math"]["n"] == 3
    assert canary["code"]["n"] == stable["code"]["n"] == 2
    assert (canary["math"]["accuracy"], canary["code"]["pass_at_1"], canary["score"]) == (1, 1, 1)
    assert (stable["math"]["accuracy"], stable["code"]["pass_at_1"], stable["score"]) == (0, 0, 0)
    assert canary["math"]["accuracy_ci95"] == pytest.approx(list(wilson_interval(3, 3)))
    assert stable["code"]["pass_at_1_ci95"] == pytest.approx(list(wilson_interval(0, 2)))
    assert canary["math"]["completeness"] == 1.0
    assert canary["model"] == "vibethinker-1.5b"
    assert canary["prompt_ref"].startswith("vibethinker-competition@")
    assert stable["prompt_ref"] is None
    assert canary["errors"] == canary["fallbacks"] == stable["errors"] == 0
    assert canary["output_tokens"] > 0
    assert canary["latency_p50_s"] is not None
    assert canary["latency_p95_s"] >= canary["latency_p50_s"]
    # Each variant got every item once, through the SDK: the reviewed prompt and sampling.
    assert len(right.chat_requests) == len(wrong.chat_requests) == len(ITEMS)
    sent = right.chat_requests[0].json
    assert sent["messages"][0] == {"role": "system", "content": VIBETHINKER_SYSTEM_PROMPT}
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.6, 0.95, 64)
    assert wrong.chat_requests[0].json["temperature"] == 0.0

    code, out, err = vibe(capsys, "eval", "run", "vibethinker", "--set", str(TINY))
    assert code == 0, err
    assert err == ""  # no progress bar: stderr is not a terminal
    lines = out.splitlines()
    assert f"document version {version}" in lines[0]
    assert re.search(r"canary\s+vibethinker-1\.5b\s+vibethinker-competition@\d+\s+3\s+100% \(", out)
    assert re.search(r"stable\s+stable-model\s+-\s+3\s+0% \(0%-", out)
    assert re.search(r"canary\s+5\s+\d+\s+0\s+0\s+\d", out)  # answers, checks, errors...


def test_stored_runs_are_visible_through_the_admin_route_and_history(
    capsys: pytest.CaptureFixture[str], env: FlagServer, flag: dict[str, Any]
) -> None:
    """Each answer is stored per item and variant with version, model and prompt ref."""
    first = vibe_json(capsys, "eval", "run", "vibethinker", "--set", str(TINY))
    second = vibe_json(
        capsys, "eval", "run", "vibethinker", "--set", str(TINY), "--variants", "canary"
    )
    base = f"/v1/admin/environments/{env.environment}/eval-runs"
    runs = env.admin_request("GET", base, params={"flag": "vibethinker"}).json()
    assert [r["id"] for r in runs] == [second["run_id"], first["run_id"]]
    assert runs[1]["variants"] == ["stable", "canary"]
    assert runs[1]["summary"]["canary"]["math"]["accuracy"] == 1.0
    results = env.admin_request("GET", f"{base}/{first['run_id']}/results").json()
    assert len(results) == 2 * len(ITEMS)
    by_key = {(r["item_id"], r["variant"]): r for r in results}
    half = by_key[("half", "canary")]
    assert half["correct"] is True
    assert half["document_version"] == first["document_version"]
    assert half["model"] == "vibethinker-1.5b"
    assert half["prompt_ref"] == first["variants"]["canary"]["prompt_ref"]
    assert by_key[("add-fn", "stable")]["passed"] is False

    history = vibe_json(capsys, "eval", "history", "vibethinker")
    assert [h["run_id"] for h in history] == [second["run_id"], first["run_id"]]
    assert history[1]["variants"] == first["variants"]
    code, out, _ = vibe(capsys, "eval", "history", "vibethinker")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["RUN", "STARTED", "(UTC)"]
    assert rows[0].split()[0] == str(second["run_id"])
    assert re.search(r"stable\s+stable-model\s+0%\s+0%\s+0\.00", out)
    assert re.search(r"canary\s+vibethinker-1\.5b\s+100%\s+100%\s+1\.00", out)


@pytest.mark.parametrize(
    ("lines", "line", "says"),
    [
        (
            [
                '{"id": "a", "kind": "math", "prompt": "p", "answer": "1", "lang": "en",'
                ' "tags": []}',
                "{not json",
            ],
            2,
            "JSON",
        ),
        (['{"id": "a", "kind": "essay", "prompt": "p"}'], 1, "unknown kind 'essay'"),
        (['{"id": "a", "kind": "math", "prompt": "p", "lang": "en", "tags": []}'], 1, "'answer'"),
    ],
)
def test_a_bad_set_is_refused_by_line_before_any_backend_call(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: FlagServer,
    flag: dict[str, Any],
    right: FakeBackend,
    wrong: FakeBackend,
    lines: list[str],
    line: int,
    says: str,
) -> None:
    """A malformed line, an unknown kind, a math item without answer: exit 2, one line."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = vibe(capsys, "eval", "run", "vibethinker", "--set", str(bad))
    assert code == 2
    assert out == ""
    assert err.startswith(f"vibe: {bad}:{line}: ")
    assert says in err
    assert len(err.splitlines()) == 1
    assert right.requests == wrong.requests == []
    runs = env.admin_request("GET", f"/v1/admin/environments/{env.environment}/eval-runs")
    assert runs.json() == []


def test_unknown_variant_or_flag_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str],
    env: FlagServer,
    flag: dict[str, Any],
    right: FakeBackend,
) -> None:
    """--variants naming no variant of the flag is a usage error; an unknown flag is 5."""
    code, _, err = vibe(
        capsys, "eval", "run", "vibethinker", "--set", str(TINY), "--variants", "canary,blue"
    )
    assert (code, err.count("\n")) == (2, 1)
    assert "no variant 'blue'; its variants: canary, stable" in err
    code, _, err = vibe(capsys, "eval", "run", "nope", "--set", str(TINY))
    assert code == 5
    assert "no flag 'nope'" in err
    assert right.requests == []


class Tty(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_progress_bar_is_drawn_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: FlagServer,
    flag: dict[str, Any],
) -> None:
    """On a terminal stderr shows the bar up to every answer; the report stays on stdout."""
    terminal = Tty()
    monkeypatch.setattr(sys, "stderr", terminal)
    report = vibe_json(capsys, "eval", "run", "vibethinker", "--set", str(TINY))
    assert report["variants"]["canary"]["n"] == len(ITEMS)
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[")
    assert f"] {2 * len(ITEMS)}/{2 * len(ITEMS)} " in drawn
    assert drawn.endswith("\n")


def _stored(env: FlagServer, run_id: int) -> int:
    path = f"/v1/admin/environments/{env.environment}/eval-runs/{run_id}/results"
    return len(env.admin_request("GET", path).json())


def test_an_interrupted_run_resumes_asking_only_the_missing_items(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    env: FlagServer,
    wrong: FakeBackend,
) -> None:
    """Ctrl-C mid-run stores what was answered; --resume asks only for the rest."""
    release = threading.Event()
    calls = {"n": 0}

    def answer_then_hang(request: Mapping[str, Any]) -> str:
        calls["n"] += 1
        if calls["n"] == 3:  # the canary's third item hangs until the test lets it go
            release.wait(60)
        return right_answer(request)

    hanging = FakeBackend(default=Reply(text=answer_then_hang), model="canary-model")
    hanging.start()
    try:
        env.apply(make_flag(stable_url=wrong.url, canary_url=hanging.url, rollout_bps=0))
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vibesdk_server._vibe.main",
                "eval",
                "run",
                "vibethinker",
                "--set",
                str(TINY),
                "--concurrency",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        try:
            deadline = time.monotonic() + 60
            while calls["n"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert calls["n"] == 3, "the run never reached the hanging item"
            run_id = env.admin_request(
                "GET", f"/v1/admin/environments/{env.environment}/eval-runs"
            ).json()[0]["id"]
            # stable and canary of the first two items, stable of the third: five answers
            assert _stored(env, run_id) == 5
            started = time.monotonic()
            cli.send_signal(signal.SIGINT)
            out, err = cli.communicate(timeout=30)
            # it does not wait for the hanging call (first-token deadline 15 s)
            assert time.monotonic() - started < 10
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.communicate()
            release.set()
        assert cli.returncode == 130, err
        assert out == ""
        assert f"--resume {run_id} --set {TINY}" in err
        assert _stored(env, run_id) == 5

        asked_before = (len(wrong.chat_requests), len(hanging.chat_requests))
        report = vibe_json(
            capsys, "eval", "run", "vibethinker", "--set", str(TINY), "--resume", str(run_id)
        )
        resumed = [item_of(r.json).id for r in hanging.chat_requests[asked_before[1] :]]
        resumed_stable = [item_of(r.json).id for r in wrong.chat_requests[asked_before[0] :]]
    finally:
        hanging.close()
    assert sorted(resumed) == ["add-fn", "even-fn", "half"]
    assert sorted(resumed_stable) == ["add-fn", "even-fn"]
    assert report["run_id"] == run_id
    assert _stored(env, run_id) == 2 * len(ITEMS)
    canary = report["variants"]["canary"]
    assert (canary["math"]["n"], canary["code"]["n"]) == (3, 2)
    assert (canary["math"]["accuracy"], canary["code"]["pass_at_1"]) == (1.0, 1.0)

    changed = tmp_path / "changed.jsonl"
    changed.write_text(TINY.read_text().replace("7 times 6", "6 times 7"))
    code, _, err = vibe(
        capsys, "eval", "run", "vibethinker", "--set", str(changed), "--resume", str(run_id)
    )
    assert code == 2
    assert "the set differs from the one the run started with" in err


# -- units ------------------------------------------------------------------------------------


def test_wilson_interval_matches_published_values() -> None:
    """0/10, 5/10 and 10/10 give the textbook Wilson bounds; no trials give None."""
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) is None
    # the edges are exact: a proportion of 0 (or 1) lies inside its own interval
    for n in (1, 3, 7, 10, 1000):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0


def test_pinning_gives_the_eval_unit_the_variant_and_changes_nothing_else() -> None:
    """A real Client on the pinned document assigns the variant by rule, even at rollout 0
    with the kill switch on; other users and every variant config stay as they were."""
    flag = make_flag(rollout_bps=0, enabled=False)
    document = make_document(flag, version=7)
    pinned = pin_variant(document, "vibethinker", "canary")
    pinned_flag = pinned.flags["vibethinker"]
    assert pinned_flag.variants == flag.variants
    assert pinned_flag.fallback == flag.fallback
    assert pinned_flag.rules[0].id == PIN_RULE
    assert pinned.version == 7
    with vibesdk.Client(flag_source=InMemoryFlagSource(pinned)) as client:
        got = client.assign("vibethinker", EVAL_UNIT)
        other = client.assign("vibethinker", "someone-else")
    assert (got.variant, got.reason, got.rule_id) == ("canary", Reason.TARGETING_MATCH, PIN_RULE)
    assert got.config == flag.variants["canary"]
    assert other.variant == "stable"


def test_fallbacks_and_errors_count_as_wrong_answers_of_the_variant() -> None:
    """A fallback or a failed call is in n, wrong, and counted apart."""
    rows = [
        {"variant": "canary", "kind": "math", "score": 1.0, "correct": True, "completeness": 1.0},
        {
            "variant": "canary",
            "kind": "math",
            "score": 0.0,
            "correct": False,
            "fallback": True,
            "error": "fallback to stable: timeout",
        },
        {"variant": "canary", "kind": "code", "score": 0.0, "passed": False, "error": "boom"},
    ]
    canary = summarize(rows, ["stable", "canary"])["canary"]
    assert (canary["math"]["n"], canary["math"]["accuracy"]) == (2, 0.5)
    assert (canary["fallbacks"], canary["errors"]) == (1, 1)
    assert summarize(rows, ["stable", "canary"])["stable"]["n"] == 0


def test_a_result_sent_twice_is_stored_once_and_bad_rows_are_refused(
    env: FlagServer, flag: dict[str, Any]
) -> None:
    """POST .../results is idempotent per item, variant and attempt; a score above 1 is 422."""
    base = f"/v1/admin/environments/{env.environment}/eval-runs"
    created = env.admin_request(
        "POST",
        base,
        json={
            "flag": "vibethinker",
            "set_name": "s",
            "set_digest": "d",
            "items": 1,
            "variants": ["canary"],
            "document_version": flag["version"],
        },
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    row = {
        "item_id": "a",
        "variant": "canary",
        "kind": "math",
        "score": 1.0,
        "correct": True,
        "document_version": flag["version"],
        "checks": ["repetition"],
        "details": {"x": 1},
    }
    for expected in (1, 0):
        sent = env.admin_request("POST", f"{base}/{run_id}/results", json={"results": [row]})
        assert sent.json() == {"stored": expected}
    (stored,) = env.admin_request("GET", f"{base}/{run_id}/results").json()
    assert (stored["correct"], stored["checks"], stored["details"]) == (
        True,
        ["repetition"],
        {"x": 1},
    )
    bad = env.admin_request(
        "POST", f"{base}/{run_id}/results", json={"results": [{**row, "score": 2}]}
    )
    assert bad.status_code == 422
    missing = env.admin_request("GET", f"{base}/999999/results")
    assert missing.status_code == 404
    assert "vibe eval history" in missing.json()["detail"]
    finished = env.admin_request("POST", f"{base}/{run_id}/finish").json()
    assert finished["summary"]["canary"]["math"]["accuracy"] == 1.0
    assert finished["finished_at"] is not None


@pytest.mark.model
@pytest.mark.skipif(MISSING is not None, reason=f"needs llama-server and SmolLM2: {MISSING}")
def test_the_real_small_model_is_evaluated_end_to_end(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    flag_server: FlagServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SmolLM2-135M on the CPU as both variants: every item answered and scored, none failed.

    Its scores are low (a 135M model and 64 tokens); the test pins that the run is whole, not
    that the model is good.
    """
    monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
    monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", flag_server.admin_token)
    monkeypatch.setenv("VIBESDK_ENVIRONMENT", flag_server.environment)
    with serve("smollm2", "cpu-small", log_dir=tmp_path) as group:
        alias = group.backend_config()["model"]
        url = group.urls[0]
        flag_server.apply(
            make_flag(stable_url=url, canary_url=url, stable_model=alias, canary_model=alias)
        )
        report = vibe_json(capsys, "eval", "run", "vibethinker", "--set", str(TINY))
    print(json.dumps(report["variants"], indent=1))
    for variant in ("stable", "canary"):
        figures = report["variants"][variant]
        assert (figures["math"]["n"], figures["code"]["n"]) == (3, 2)
        assert (figures["errors"], figures["fallbacks"]) == (0, 0)
        assert figures["output_tokens"] > 0
        assert figures["model"] == alias
        assert 0 <= figures["score"] <= 1
        low, high = figures["math"]["accuracy_ci95"]
        assert low <= figures["math"]["accuracy"] <= high


def test_a_run_that_falls_below_its_baseline_prints_the_alarm(
    capsys: pytest.CaptureFixture[str],
    env: FlagServer,
    flag: dict[str, Any],
    right: FakeBackend,
    wrong: FakeBackend,
) -> None:
    """The regression alarm end to end: the canary answers right, then (its backend swapped for
    the wrong one) wrong; the second `vibe eval run` prints the alarm and --json carries it."""
    args = ("eval", "run", "vibethinker", "--set", str(TINY), "--variants", "canary")
    first = vibe_json(capsys, *args, "--repeat", "2")
    (check,) = first["regression"]
    assert (check["variant"], check["n"], check["baseline_n"], check["alarm"]) == (
        "canary",
        10,
        0,
        False,
    )
    env.apply(make_flag(stable_url=wrong.url, canary_url=wrong.url, rollout_bps=0, enabled=False))
    code, out, err = vibe(capsys, *args, "--repeat", "2")
    assert code == 0, err
    assert (
        "alarm: eval_regression: canary's golden-set score fell from 1.00 (baseline: 1 run(s),"
        in out
    )
