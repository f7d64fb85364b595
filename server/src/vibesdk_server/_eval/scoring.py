"""Scoring one answer (STAND-IN): math by the last ``\\boxed{}``, code by running its tests.

A minimal stand-in with the interface of the real scorers. Math: the text of the last
``\\boxed{...}`` (nested braces allowed) equals the reference once spaces are removed;
completeness is 0 when the answer was cut (``finish_reason`` ``length``), else 1. Code: the
first fenced Python block, then the item's tests, run by ``python -I`` in a subprocess with a
timeout; it passes iff that exits 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .golden import Item

__all__ = ["ItemScore", "Scorer"]

_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class ItemScore:
    """One answer's score; the fields of the other kind are ``None``."""

    item_id: str
    kind: str
    score: float
    correct: bool | None
    completeness: float | None
    passed: bool | None
    conciseness: float | None
    details: dict[str, Any]


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces kept), if any."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


class Scorer:
    """Scores answers; :meth:`score` is thread-safe and blocking. ``workers`` is unused here."""

    def __init__(self, *, timeout_s: float = 10.0, workers: int | None = None) -> None:
        self.timeout_s = timeout_s

    def score(self, item: Item, answer: str, finish_reason: str | None) -> ItemScore:
        if item.kind == "math":
            return self._math(item, answer, finish_reason)
        return self._code(item, answer)

    def _math(self, item: Item, answer: str, finish_reason: str | None) -> ItemScore:
        found = last_boxed(answer)
        reference = "".join((item.answer or "").split())
        correct = found is not None and "".join(found.split()) == reference
        completeness = 0.0 if finish_reason == "length" else 1.0
        return ItemScore(
            item.id,
            "math",
            float(correct) * completeness,
            correct,
            completeness,
            None,
            None,
            {"extracted": found},
        )

    def _code(self, item: Item, answer: str) -> ItemScore:
        match = _FENCE.search(answer)
        code = match.group(1) if match else answer
        with tempfile.TemporaryDirectory(prefix="vibe-eval-") as tmp:
            script = Path(tmp) / "answer.py"
            script.write_text(f"{code}\n\n{item.tests or ''}\n", encoding="utf-8")
            try:
                run = subprocess.run(  # noqa: S603 - our own interpreter, a file we wrote
                    [sys.executable, "-I", str(script)],
                    cwd=tmp,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout_s,
                    env={},
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return ItemScore(
                    item.id, "code", 0.0, None, None, False, None, {"reason": "timeout"}
                )
        passed = run.returncode == 0
        details: dict[str, Any] = {} if passed else {"reason": run.stderr.strip()[-300:]}
        return ItemScore(item.id, "code", float(passed), None, None, passed, None, details)

    def close(self) -> None:
        """Nothing to stop in the stand-in."""

    def __enter__(self) -> Scorer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
