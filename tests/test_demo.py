"""`vibe demo --quick` end to end: real flag server, two real llama.cpp models, the example app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model


@pytest.mark.timeout(600)
def test_quick_demo_tells_the_whole_canary_story(tmp_path: Path) -> None:
    """A guarded release advances on its own, the killed canary is rolled back by the guard."""
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from vibesdk_server._vibe.main import main; sys.exit(main())",
            "demo",
            "--users",
            "20",
            "--quick",
            "--workdir",
            str(tmp_path / "work"),
            "--summary-json",
            str(summary_path),
        ],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    # Users keep asking until the guard acts, so there are at least the 20 planned.
    assert summary["users"] >= 20
    assert summary["errors"] == 0
    phase1, phase2, phase3 = summary["phases"]
    assert phase1["rollout_bps"] == 2500
    assert phase2["rollout_bps"] == 5000
    assert phase2["canary_share"] > phase1["canary_share"] / 2
    assert phase3["canary_users"] == 0
    # The guard, not a person, advanced the release and then rolled it back, with an incident.
    actions = [(a["action"], a["actor"]) for a in summary["guard_actions"]]
    assert ("release_advance", "guard") in actions
    assert ("release_rollback", "guard") in actions
    assert not any(action == "rollback" for action, _ in actions)
    assert summary["release"]["state"] == "rolled_back"
    assert summary["release"]["state_reason"].startswith("rolled back by the guard")
    [incident] = summary["incidents"]
    assert incident["actor"] == "guard"
    assert incident["to_version"] == incident["from_version"] + 1
    # The canary's server was killed in phase 2: its later users were answered by stable.
    assert summary["variants"]["canary"]["fallbacks"] >= 1
    assert summary["variants"]["stable"]["answered_by"] > summary["variants"]["stable"]["users"]
    assert [f["actor"] for f in summary["flips"]] == ["guard", "guard"]
    assert all(f["reach_after_return_s"] is not None for f in summary["flips"])
    traces = Path(summary["traces"]).read_text().splitlines()
    assert any('"feature_flag.result.variant": "canary"' in line for line in traces)
    for heading in ("flag server", "model servers", "product app", "summary", "incident"):
        assert heading in done.stdout
    assert "$ vibe rollback" not in done.stdout  # nobody rolled back by hand
