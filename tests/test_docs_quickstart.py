"""docs/quickstart.md's "by hand" section, run as written: its own shell blocks, in order.

The blocks are taken from the Markdown and run in one bash (``set -euo pipefail``, so a command
that fails or a variable the page never set stops it) against real processes: the flag server,
two llama.cpp models, the example app. Only two things differ from a reader's shell: the run
happens in a temporary directory holding ``.venv`` (a link to this interpreter's environment) and
a copy of ``examples/``, and the page's fixed ports are swapped for free ones so that the test
can run beside anything else.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .examples_harness import real_models_or_skip

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
SECTION = "## 3. Run a canary by hand"
PORTS = ("8700", "8081", "8082", "8000")  # flag server, stable, canary, app: as the page has them

serving = real_models_or_skip()
if shutil.which("curl") is None:
    pytest.skip("needs curl, which the quickstart uses to wait", allow_module_level=True)


def shell_blocks(markdown: str, heading: str) -> list[str]:
    """The ```bash blocks under ``heading``, up to the next heading of the same level."""
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) :]
    end = re.search(r"^## ", rest, re.MULTILINE)
    section = rest[: end.start()] if end else rest
    return re.findall(r"^```bash\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_section_has_the_steps_a_reader_needs() -> None:
    """Activate .venv, start the server, both models and the app, flip, roll back, stop."""
    script = "\n".join(shell_blocks(QUICKSTART.read_text(encoding="utf-8"), SECTION))
    for needed in (
        "source .venv/bin/activate",
        "export BOB_TOKEN=",
        "vibe-server --db",
        "vibe-serve --profile cpu-small --model smollm2 --port 8081 &",
        "vibe-serve --profile cpu-small --model gemma3-270m --port 8082 &",
        "examples/product_app/app.py",
        "vibe rollout vibethinker",
        "vibe rollback vibethinker",
        "kill $(jobs -p)",
    ):
        assert needed in script, needed
    assert "./scripts/demo --serve" in QUICKSTART.read_text(encoding="utf-8")


@pytest.mark.model
def test_quickstart_by_hand_runs_as_written(tmp_path: Path) -> None:
    """Every block runs; the app sees u42 stable, canary after the flip, stable after rollback."""
    ports = {old: str(_free_port()) for old in PORTS}
    pattern = re.compile(r"\b(" + "|".join(PORTS) + r")\b")

    def local(text: str) -> str:
        return pattern.sub(lambda m: ports[m.group(1)], text)

    blocks = shell_blocks(QUICKSTART.read_text(encoding="utf-8"), SECTION)
    assert len(blocks) >= 6
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    flags = tmp_path / "examples" / "flags.yaml"
    flags.write_text(local(flags.read_text(encoding="utf-8")), encoding="utf-8")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    script = "set -euo pipefail\n" + "\n".join(local(block) for block in blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBESDK_")}
    env.pop("VIRTUAL_ENV", None)
    log = tmp_path / "quickstart.log"
    # Output to a file, not a pipe: after a failed step the background servers still hold the
    # script's stdout, and reading a pipe would wait for them.
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        proc.wait(timeout=400)
    finally:
        deadline = time.monotonic() + 30
        while not all(_closed(int(p)) for p in ports.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1)
    output = log.read_text(errors="replace")
    assert proc.returncode == 0, output[-4000:]
    variants = re.findall(r'"variant":"(\w+)"', output)
    assert variants == ["stable", "canary", "stable"], output[-4000:]
    assert output.count("ready  http://127.0.0.1:") == 2, output[-4000:]
    assert all(_closed(int(p)) for p in ports.values()), "kill $(jobs -p) left a server running"
