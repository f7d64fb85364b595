"""Build hooks of vibesdk-server: its requirement on vibesdk, and the demo's files.

``VibesdkPinHook`` (metadata): vibesdk-server is released together with vibesdk, under the
version written once in ``vibesdk/__init__.py``, and requires exactly that vibesdk, so that
``vibesdk_server.__version__`` (the installed vibesdk's) is always the server's own. It adds
``vibesdk==<version>`` to the dependencies listed in pyproject.toml.

``CustomBuildHook`` (wheel): ship what ``vibe demo`` reads from the repository's ``examples/``.

The files live once, in ``examples/`` at the top of the repository (where users read them);
the wheel gets a copy under ``vibesdk_server/_vibe/demo_data/`` so that ``vibe demo`` works
from an installed ``vibesdk-server``. They are found next to this file's directory in a
checkout (``../examples``) or inside the sdist (``examples/``, see pyproject.toml). An
editable install reads the checkout's ``examples/`` directly and gets no copy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

#: What the demo reads, relative to examples/ (mirrored by vibesdk_server._vibe.demo_data).
DEMO_FILES = ("flags.yaml", "prompts", "product_app")
TARGET = "vibesdk_server/_vibe/demo_data"


class VibesdkPinHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        listed = self.config.get("dependencies", [])
        if any(_name(requirement) == "vibesdk" for requirement in listed):
            raise ValueError(
                "server/pyproject.toml: remove vibesdk from [tool.hatch.metadata.hooks.custom] "
                "dependencies; hatch_build.py pins it to vibesdk's own version"
            )
        metadata["dependencies"] = [*listed, f"vibesdk=={metadata['version']}"]


def _name(requirement: str) -> str:
    """The lower-cased project name a requirement starts with (``"vibesdk>=0.1"``: vibesdk)."""
    return re.split(r"[^A-Za-z0-9._-]", requirement.strip(), maxsplit=1)[0].lower()


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
