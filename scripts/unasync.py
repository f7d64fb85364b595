"""Write the blocking client's control flow from the asyncio client's.

    .venv/bin/python scripts/unasync.py          # rewrite the generated files
    .venv/bin/python scripts/unasync.py --check  # exit 1 when one is stale

Each async source becomes its sync twin by token replacement, as httpcore does:
``async``/``await`` go and the asyncio names become their blocking twins. The
result is tidied by ruff (unused imports dropped, imports sorted, then
formatted), so a generated file passes the same checks as hand-written code.
tests/test_unasync.py runs the check, so the two cannot drift.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "vibesdk" / "_client"

#: (async source, generated sync file)
FILES = [(CLIENT / "calls_aio.py", CLIENT / "calls_sync.py")]

#: Whole-word replacements, in order.
SUBS = [
    (r"\basync def\b", "def"),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\bawait ", ""),
    (r"\bAsyncCalls\b", "Calls"),
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncGate\b", "Gate"),
    (r"\bAsyncRetrying\b", "Retrying"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAwaitable\[([^\[\]]*)\]", r"\1"),
    (r"\baiter_bytes\b", "iter_bytes"),
    (r"\baiter_text\b", "iter_text"),
    (r"\baclose\b", "close"),
    (r"\banext\b", "next"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
]

HEADER = "# Generated from {source} by scripts/unasync.py; do not edit.\n"


def unasync(text: str) -> str:
    """``text`` with every replacement applied."""
    for pattern, replacement in SUBS:
        text = re.sub(pattern, replacement, text)
    return text


def _ruff(args: list[str], text: str, path: Path) -> str:
    command = [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(path), "-"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and its ruff
        command, input=text, capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"unasync: ruff {args[0]} failed on {path.name}:\n{done.stderr}")
    return done.stdout


def render(source: Path, target: Path) -> str:
    """The sync file generated from ``source``."""
    text = HEADER.format(source=source.name) + unasync(source.read_text(encoding="utf-8"))
    text = _ruff(["check", "--fix", "--quiet", "--select", "F401,I"], text, target)
    return _ruff(["format", "--quiet"], text, target)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source, target in FILES:
        text = render(source, target)
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        if text == current:
            continue
        if check:
            stale.append(target.relative_to(ROOT))
        else:
            target.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path} is stale: run python scripts/unasync.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
