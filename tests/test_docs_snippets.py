"""Every ```python block in README.md and docs/ runs, each in a fresh namespace.

The convention (docs/contributing.md): a block runs as written, in a new temporary
working directory, with no ``VIBESDK_*`` connection variables set. A block that
mentions ``VIBESDK_`` gets a live environment in those variables -- a real flag server
on loopback (``VIBESDK_SERVER_URL``, ``VIBESDK_SDK_KEY``, ``VIBESDK_ADMIN_TOKEN``,
``VIBESDK_ENVIRONMENT``) whose flag ``vibethinker`` (stable + canary at 10%) is served by
two fake model backends -- so ``vibesdk.Client()`` just works. Blocks may also bring
their own doubles from ``vibesdk.testing``. A block whose fence says
``title="not run"`` is shown but not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from vibesdk_server.testing import FlagServer

from vibesdk.testing import FakeBackend, Reply, make_flag

ROOT = Path(__file__).resolve().parent.parent
_OPEN = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)(?P<attrs>.*)$"
)


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence
    code: str
    run: bool

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def collect(path: Path) -> Iterator[Snippet]:
    """The fenced python blocks of a Markdown file, dedented, with their first line number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        start = i + 1
        body = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if m["lang"] in {"python", "py"}:
            yield Snippet(path, start, "\n".join(body) + "\n", 'title="not run"' not in m["attrs"])


SNIPPETS = [s for page in _pages() if page.is_file() for s in collect(page)]


def test_collector_reads_fences_like_markdown(tmp_path: Path) -> None:
    """Indented fences (tabs, admonitions), other languages and not-run blocks are told apart."""
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nls\n```\n\n```python\nx = 1\n```\n\n"
        '=== "Tab"\n\n    ```python title="not run"\n    y = 2\n    ```\n'
        "````python\nprint('```')\n````\n",
        encoding="utf-8",
    )
    found = list(collect(page))
    assert [(s.line, s.code, s.run) for s in found] == [
        (5, "x = 1\n", True),
        (11, "y = 2\n", False),
        (14, "print('```')\n", True),
    ]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("SERVER_URL", "SDK_KEY", "ADMIN_TOKEN", "ENVIRONMENT", "BOOTSTRAP"):
        monkeypatch.delenv(f"VIBESDK_{name}", raising=False)
    monkeypatch.setenv("VIBESDK_CACHE_DIR", str(tmp_path / "cache"))
    return work


@pytest.fixture
def live_env(flag_server: FlagServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    stable = FakeBackend(default=Reply(text="17 * 23 = 391."), model="smollm2-135m-instruct")
    canary = FakeBackend(
        default=Reply(text="17 * 23 = 17 * 20 + 17 * 3 = 340 + 51.\n391", reasoning="think"),
        model="vibethinker-1.5b",
    )
    with stable.serve() as stable_url, canary.serve() as canary_url:
        flag_server.apply(make_flag(stable_url=stable_url, canary_url=canary_url, rollout_bps=1000))
        monkeypatch.setenv("VIBESDK_SERVER_URL", flag_server.url)
        monkeypatch.setenv("VIBESDK_SDK_KEY", flag_server.sdk_key)
        monkeypatch.setenv("VIBESDK_ADMIN_TOKEN", flag_server.admin_token)
        monkeypatch.setenv("VIBESDK_ENVIRONMENT", flag_server.environment)
        yield


@pytest.mark.timeout(120)
@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.run], ids=lambda s: s.id)
def test_snippet_runs(snippet: Snippet, workdir: Path, request: pytest.FixtureRequest) -> None:
    """The block runs to the end without raising, as a reader would paste it."""
    if "VIBESDK_" in snippet.code:
        request.getfixturevalue("live_env")
    code = compile(snippet.code, snippet.id, "exec")
    exec(code, {"__name__": "__docs__"})


def test_every_page_is_scanned() -> None:
    """The README and the docs pages are where the snippets are looked for."""
    pages = {p.relative_to(ROOT).as_posix() for p in _pages()}
    assert "README.md" in pages
    assert "docs/quickstart.md" in pages
