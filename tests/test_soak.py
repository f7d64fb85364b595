"""The soak benchmark's short mode: 1,000 concurrent chat calls, a failing canary, no caller errors.

It runs benchmarks/soak/soak.py itself (real flag server, fake backends in
their own process, the OpenTelemetry SDK exporting) for 15 s of load. Only
the promise is asserted -- no error reaches a caller while the canary fails
and is fallen back from; timings and the memory slope are benchmark numbers,
recorded in benchmarks/soak/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_soak_raises_no_error_to_any_of_1000_concurrent_callers(tmp_path: Path) -> None:
    """15 s of 1,000 concurrent AsyncClient.chat() calls, canary failing 10%: 0 errors raised."""
    out = tmp_path / "soak.jsonl"
    run = subprocess.run(
        [sys.executable, "benchmarks/soak/soak.py", "--duration", "15", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.exists(), run.stderr[-3000:]
    summary = json.loads(out.read_text().splitlines()[-1])
    assert summary["kind"] == "summary"
    assert summary["errors_raised"] == 0, summary["error_samples"]
    assert run.returncode == 0, run.stderr[-3000:]
    # The soak did what it says: many calls, canary failures injected and fallen back from.
    canary = summary["fakes"]["canary"]
    assert summary["calls"] > 0  # how many finish in 15 s depends on the machine, not the SDK
    assert canary["requests"] - canary["ok"] > 0
    assert summary["fallbacks"] > 0
    assert set(summary["answered_by"]) == {"stable", "canary"}
