"""How the project checks itself: the pytest timeout, ``pytest --fast``, mypy's reach and the
pre-commit hooks, each as configured in the repository (pyproject.toml, conftest.py at the top,
.pre-commit-config.yaml) and run as ./scripts/test runs it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def _command(words: list[str]) -> tuple[str, ...]:
    """A check's command without what only changes where it writes or how it talks:
    ``env VAR=...`` in front, ``--site-dir DIR``; ``"$bin/"`` spelled as ``.venv/bin/``."""
    words = [w.replace("$bin/", ".venv/bin/") for w in words]
    while words and (words[0] == "env" or "=" in words[0]):
        words = words[1:]
    if "--site-dir" in words:
        at = words.index("--site-dir")
        del words[at : at + 2]
    return tuple(words)


def test_the_pre_commit_hooks_run_the_checks_scripts_test_runs_before_pytest() -> None:
    """.pre-commit-config.yaml: local hooks only (nothing downloaded), each a tool of .venv,
    running the commands scripts/test runs before pytest, plus the unasync check."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    hooks = config["repos"][0]["hooks"]
    for hook in hooks:
        assert hook["language"] == "system", hook["id"]
        assert hook["pass_filenames"] is False, hook["id"]
    hooked = {_command(shlex.split(hook["entry"])) for hook in hooks}
    assert all(command[0].startswith(".venv/bin/") for command in hooked), hooked

    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert "\nbin=.venv/bin\n" in script
    before_pytest = script.split('section "pytest"')[0]
    checks = {
        _command(shlex.split(line.split(";")[0]))
        for line in re.findall(r'^(?:section "[^"]*"; +)?("\$bin/\S+".*)$', before_pytest, re.M)
    }
    assert len(checks) == 4, checks  # ruff check, ruff format --check, mypy, mkdocs
    unasync = (".venv/bin/python", "scripts/unasync.py", "--check")
    assert hooked == checks | {unasync}
