"""The guarded canary end to end, short: benchmarks/release_safety/run_e2e.py --quick.

It runs the benchmark itself (the real vibe-server with its guard, an AsyncClient exporting its
measurements with the SDK's own OTLP export, fake backends in their own process) for one fault
-- a repetition loop in 20% of the answers, which only the output checks can see: the answers
are otherwise fine and are delivered -- and a healthy canary. Only the
outcomes are asserted: the broken canary is rolled back by the guard (with an incident), the
healthy one is advanced and never rolled back, and no caller sees an error. How many seconds
each took is a benchmark number, recorded in benchmarks/release_safety/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_the_guard_rolls_back_looping_answers_and_advances_a_healthy_canary(tmp_path: Path) -> None:
    """--quick, faults loop and healthy: rolled back / advanced, 0 errors raised to callers."""
    out = tmp_path / "e2e.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            "benchmarks/release_safety/run_e2e.py",
            "--quick",
            "--faults",
            "loop,healthy",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert out.exists(), run.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    runs = {r["fault"]: r for r in lines if r["kind"] == "run"}
    loop, healthy = runs["loop"], runs["healthy"]
    assert loop["errors_raised"] == 0, loop["error_samples"]
    assert healthy["errors_raised"] == 0, healthy["error_samples"]
    # The broken canary: rolled back by the guard, seen by the app, on the output check.
    assert loop["rolled_back"], loop["decisions"]
    assert loop["release_state"] == "rolled_back"
    assert loop["canary_user_after"] == "stable"
    assert "check:repetition_loop" in loop["incident_reason"]
    # The healthy canary: advanced once it had its samples, never rolled back.
    assert not healthy["rolled_back"], healthy["incident_reason"]
    assert healthy["advanced"], healthy["decisions"]
    assert healthy["incident_reason"] is None
    assert run.returncode == 0, run.stderr[-3000:]
