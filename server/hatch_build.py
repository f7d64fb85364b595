"""Wheel build hook: ship what ``vibe demo`` reads from the repository's ``examples/``.

The files live once, in ``examples/`` at the top of the repository (where users read them);
the wheel gets a copy under ``vibesdk_server/_vibe/demo_data/`` so that ``vibe demo`` works
from an installed ``vibesdk-server``. They are found next to this file's directory in a
checkout (``../examples``) or inside the sdist (``examples/``, see pyproject.toml). An
editable install reads the checkout's ``examples/`` directly and gets no copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: What the demo reads, relative to examples/ (mirrored by vibesdk_server._vibe.demo_data).
DEMO_FILES = ("flags.yaml", "prompts", "product_app")
TARGET = "vibesdk_server/_vibe/demo_data"


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        root = Path(self.root)
        candidates = (root.parent / "examples", root / "examples")
        examples = next((c for c in candidates if (c / "flags.yaml").is_file()), None)
        if examples is None:
            raise FileNotFoundError(
                "vibesdk-server's wheel needs the repository's examples/ for vibe demo; "
                f"looked in {' and '.join(str(c) for c in candidates)}: build from a checkout "
                "(pip wheel ./server) or from the sdist"
            )
        for name in DEMO_FILES:
            top = examples / name
            for path in [top] if top.is_file() else sorted(top.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    where = path.relative_to(examples).as_posix()
                    build_data["force_include"][str(path)] = f"{TARGET}/{where}"
