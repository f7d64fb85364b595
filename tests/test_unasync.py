"""The blocking client's control flow is generated from the asyncio client's and must not drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "unasync.py"


def test_the_sync_calls_module_is_what_unasync_makes_of_the_async_one() -> None:
    """calls_sync.py equals what scripts/unasync.py generates from calls_aio.py today."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_generated_file_says_so_and_has_no_async_left() -> None:
    """The generated file names its source, and no await/async/asyncio name survived."""
    text = (ROOT / "vibesdk" / "_client" / "calls_sync.py").read_text(encoding="utf-8")
    assert text.startswith("# Generated from calls_aio.py by scripts/unasync.py; do not edit.\n")
    code = text.split('"""', 2)[2]  # after the module docstring, shared with the source
    for word in ("await ", "async ", "AsyncIterator", "AsyncRetrying", "aiter_", "aclose"):
        assert word not in code, word
