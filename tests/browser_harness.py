"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browser download is never used (this project downloads nothing at run
time): the tests point it at the system's Chromium, which scripts/install installs as root.
Importing this module skips the importing test module when either is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "needs Chromium on PATH: apt-get install -y chromium (scripts/install does it as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright (requirements-dev.txt): bash scripts/install"
)


@pytest.fixture(scope="module", name="browser")
def chromium_browser() -> Iterator[Any]:
    """``browser``: one headless Chromium for the module (import this to use the fixture)."""
    with sync_api.sync_playwright() as pw:
        # --no-sandbox: Chromium refuses to start its sandbox as root (CI containers).
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
