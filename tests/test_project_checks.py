"""How the project checks itself: the pytest timeout, ``pytest --fast`` and mypy's reach, each as
configured in the repository (pyproject.toml, conftest.py at the top) and run as ./scripts/test
runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling (requirements-dev.txt) brings tomli along before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

#: What ``--fast`` leaves out, and a file with tests of each kind.
SLOW = ("model", "postgres", "wheels")
SAMPLE = [
    "tests/test_packaging.py",  # wheels, and tests that build nothing
    "tests/test_demo.py",  # model
    "server/tests/test_replicas.py",  # postgres
    "server/tests/test_admin.py",  # sqlite and postgres, as parameters of one fixture
]


def _pytest(*args: str, cwd: Path = ROOT) -> str:
    """Run pytest in a fresh process (no options from the environment); its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_TIMEOUT")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _ids(collected: str) -> set[str]:
    return {line for line in collected.splitlines() if "::" in line}


def test_the_300_s_test_timeout_is_configuration_not_a_command_line_flag(
    request: pytest.FixtureRequest,
) -> None:
    """pyproject.toml sets pytest-timeout's 300 s, and pytest started from server/ reads it too."""
    assert request.config.getini("timeout") == "300"
    header = _pytest("--collect-only", "tests/test_pytest_plugin.py", cwd=ROOT / "server")
    assert f"rootdir: {ROOT}" in header
    assert "configfile: pyproject.toml" in header
    assert "timeout: 300.0s" in header
    assert "--timeout" not in (ROOT / "scripts" / "test").read_text(encoding="utf-8")


def test_fast_deselects_the_model_postgres_and_wheel_tests_and_says_how_many() -> None:
    """``--fast`` keeps exactly what ``-m "not model and not postgres and not wheels"`` keeps,
    reports pytest's own "N deselected" and a count per marker; without it nothing is left out."""
    fast = _pytest("--collect-only", "-q", "--fast", *SAMPLE)
    by_marker = _pytest(
        "--collect-only", "-q", "-m", " and ".join(f"not {m}" for m in SLOW), *SAMPLE
    )
    everything = _pytest("--collect-only", "-q", *SAMPLE)
    assert _ids(fast) == _ids(by_marker)
    left_out = len(_ids(everything)) - len(_ids(fast))
    assert f"({left_out} deselected)" in fast
    line = re.search(
        r"--fast: deselected (\d+) slow tests \((\d+) model, (\d+) postgres, (\d+) wheels\)", fast
    )
    assert line, fast[-2000:]
    total, *each = (int(n) for n in line.groups())
    assert total == left_out == sum(each)
    assert all(n > 0 for n in each), line.group(0)
    assert "deselected" not in everything


def test_mypy_checks_both_packages_as_python_3_10_code() -> None:
    """[tool.mypy] covers vibesdk and vibesdk_server, strict, for the lowest supported Python;
    scripts/test runs mypy with that configuration and no arguments of its own."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mypy = config["tool"]["mypy"]
    assert mypy["strict"] is True
    assert {"vibesdk", "server/src/vibesdk_server"} <= set(mypy["files"])
    lowest = re.fullmatch(r">=\s*(3\.\d+)", config["project"]["requires-python"])
    assert lowest, config["project"]["requires-python"]
    assert mypy["python_version"] == lowest.group(1) == "3.10"
    assert re.search(r'"\$bin/mypy";', (ROOT / "scripts" / "test").read_text(encoding="utf-8"))
