"""docs/reference/settings.md is generated from Settings and must not drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_settings_page_is_current() -> None:
    """The settings page equals what scripts/gen_settings_doc.py renders from the model today."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_settings_doc.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_settings_page_lists_every_field() -> None:
    """Every Settings field appears with its VIBESDK_ environment variable."""
    from vibesdk import Settings

    page = (ROOT / "docs" / "reference" / "settings.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"`VIBESDK_{name.upper()}`" in page
