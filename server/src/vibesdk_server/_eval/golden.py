"""Golden sets: JSONL files of math and code problems with what a right answer must satisfy.

One JSON object per line (blank lines are skipped)::

    {"id": "m-001", "kind": "math", "prompt": "...", "answer": "\\\\frac{1}{2}",
     "lang": "en", "tags": ["algebra"]}
    {"id": "c-001", "kind": "code", "prompt": "...", "entry_point": "solve",
     "tests": "assert solve(1) == 2", "reference": "def solve(x): ...",
     "lang": "zh", "tags": ["strings"]}

``answer`` (math) is LaTeX or plain text; ``tests`` (code) is Python source run after the
answer's code in the same namespace; ``reference`` (code, optional) is a solution that passes
the tests. :func:`load_set` checks every line before anything else happens and raises
:class:`GoldenSetError` naming the first bad line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["KINDS", "LANGS", "SHIPPED_SET", "GoldenSetError", "Item", "load_set", "parse_set"]

#: The set we ship: original problems written for vibesdk (docs/concepts/evaluation.md).
SHIPPED_SET: Path = Path(__file__).resolve().parent / "data" / "golden.jsonl"
KINDS = ("math", "code")
LANGS = ("en", "zh")

_FIELDS: dict[str, dict[str, bool]] = {  # kind -> field -> required
    "math": {"id": True, "kind": True, "prompt": True, "answer": True, "lang": True, "tags": True},
    "code": {
        "id": True,
        "kind": True,
        "prompt": True,
        "entry_point": True,
        "tests": True,
        "reference": False,
        "lang": True,
        "tags": True,
    },
}


class GoldenSetError(ValueError):
    """A golden set that cannot be used; the message is ``PATH:LINE: what is wrong and what to
    fix``."""


@dataclass(frozen=True)
class Item:
    """One problem of a golden set (``line``: its line number in the file)."""

    id: str
    kind: Literal["math", "code"]
    prompt: str
    lang: str
    tags: tuple[str, ...]
    answer: str | None = None
    entry_point: str | None = None
    tests: str | None = None
    reference: str | None = None
    line: int = 0


def load_set(path: str | os.PathLike[str] | None = None) -> list[Item]:
    """Every item of the JSONL file at ``path`` (None: :data:`SHIPPED_SET`), in file order."""
    file = Path(path) if path is not None else SHIPPED_SET
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenSetError(f"{file}:0: cannot read the golden set ({exc})") from exc
    return parse_set(text, str(file))


def parse_set(text: str, name: str) -> list[Item]:
    """Every item of a golden set's JSONL ``text``, checked like :func:`load_set` checks a file
    (``name`` stands for the file in the messages: ``NAME:LINE: ...``)."""
    file = name
    items: list[Item] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item = _item(raw, number, f"{file}:{number}")
        if item.id in seen:
            raise GoldenSetError(
                f"{file}:{number}: duplicate id {item.id!r} (first on line {seen[item.id]}); "
                "give every item its own id"
            )
        seen[item.id] = number
        items.append(item)
    if not items:
        raise GoldenSetError(f"{file}:0: the golden set has no items; add one JSON object a line")
    return items


def _item(raw: str, number: int, where: str) -> Item:
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise GoldenSetError(f"{where}: not valid JSON ({exc}); write one object per line") from exc
    if not isinstance(data, dict):
        raise GoldenSetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise GoldenSetError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    _check_fields(data, kind, where)
    if kind == "math" and not _balanced(data["answer"]):
        raise GoldenSetError(
            f"{where}: 'answer' has unbalanced braces: {data['answer']!r}; close every {{"
        )
    if kind == "code":
        _check_code(data, where)
    return Item(
        id=data["id"],
        kind=kind,
        prompt=data["prompt"],
        lang=data["lang"],
        tags=tuple(data["tags"]),
        answer=data.get("answer"),
        entry_point=data.get("entry_point"),
        tests=data.get("tests"),
        reference=data.get("reference"),
        line=number,
    )


def _check_fields(data: dict[str, Any], kind: str, where: str) -> None:
    """Every field known, every required one present, each of the right type; lang known."""
    fields = _FIELDS[kind]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise GoldenSetError(
            f"{where}: unknown field(s) {', '.join(unknown)} for a {kind} item; "
            f"allowed: {', '.join(fields)}"
        )
    for name, required in fields.items():
        if name not in data:
            if required:
                raise GoldenSetError(f"{where}: a {kind} item needs {name!r}; add it")
            continue
        value = data[name]
        if name == "tags":
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise GoldenSetError(f"{where}: 'tags' must be a list of strings")
        elif not isinstance(value, str) or not value.strip():
            raise GoldenSetError(f"{where}: {name!r} must be a non-empty string")
    if data["lang"] not in LANGS:
        raise GoldenSetError(
            f"{where}: unknown lang {data['lang']!r}; use one of {', '.join(LANGS)}"
        )


def _check_code(data: dict[str, Any], where: str) -> None:
    """The tests and the reference compile; the entry point is a Python name."""
    for name in ("tests", "reference"):
        if name in data:
            try:
                compile(data[name], f"<{name}>", "exec")
            except SyntaxError as exc:
                raise GoldenSetError(
                    f"{where}: {name!r} is not valid Python ({exc.msg}, line {exc.lineno})"
                ) from exc
    if not data["entry_point"].isidentifier():
        raise GoldenSetError(f"{where}: entry_point {data['entry_point']!r} is not a Python name")


def _balanced(latex: str) -> bool:
    """Whether the unescaped braces of ``latex`` pair up (``\\{`` and ``\\}`` are literal)."""
    depth = 0
    escaped = False
    for ch in latex:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
            if depth < 0:
                return False
    return depth == 0
