"""The pytest plugin: PostgreSQL tests skip without a database, but fail under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TEST = '''
def test_needs_postgres(postgres_url):
    """Uses the postgres_url fixture."""
    assert postgres_url
'''


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_pg.py").write_text(TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "VIBESDK_TEST_POSTGRES_URL", "PYTEST_ADDOPTS")
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**clean, **env},
        check=False,
    )


@pytest.mark.parametrize(("env", "expected"), [({}, "1 skipped"), ({"CI": "true"}, "1 error")])
def test_postgres_tests_skip_locally_and_fail_in_ci(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    """Without VIBESDK_TEST_POSTGRES_URL: skipped, unless CI=true, where it errors."""
    result = _run(tmp_path, **env)
    assert expected in result.stdout, result.stdout + result.stderr
    assert "VIBESDK_TEST_POSTGRES_URL" in result.stdout
