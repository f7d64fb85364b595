"""The golden set: JSON Lines of math and code problems (STAND-IN).

This is a minimal stand-in with the interface of the real loader: one JSON object per line,
``kind`` ``math`` (needs ``answer``) or ``code`` (needs ``entry_point`` and ``tests``).
Every problem found is a :class:`GoldenSetError` naming ``PATH:LINE``. It ships no set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SHIPPED_SET", "GoldenSetError", "Item", "load_set"]

SHIPPED_SET = Path(__file__).parent / "golden" / "golden.jsonl"


@dataclass(frozen=True)
class Item:
    """One problem of the set; ``line`` is its line number in the file."""

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


class GoldenSetError(ValueError):
    """A set that cannot be used: ``PATH:LINE: what to fix``."""


def load_set(path: str | os.PathLike[str] | None = None) -> list[Item]:
    """Every item of the JSON Lines file ``path`` (``None``: the set we ship), in file order."""
    where = Path(SHIPPED_SET if path is None else path)
    try:
        text = where.read_text(encoding="utf-8")
    except OSError as exc:
        raise GoldenSetError(f"{where}: cannot read the set ({exc.strerror})") from None
    items: list[Item] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        item = _item(f"{where}:{number}", raw, number)
        if item.id in seen:
            raise GoldenSetError(f"{where}:{number}: duplicate id {item.id!r}; make ids unique")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise GoldenSetError(f"{where}: the set has no items; add one JSON object per line")
    return items


def _item(at: str, raw: str, number: int) -> Item:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise GoldenSetError(f"{at}: not a JSON object ({exc}); write one item per line") from None
    if not isinstance(data, dict):
        raise GoldenSetError(f"{at}: not a JSON object; write one item per line")
    for name in ("id", "prompt"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise GoldenSetError(f"{at}: {name!r} must be a non-empty string")
    kind = data.get("kind")
    if kind not in ("math", "code"):
        raise GoldenSetError(f"{at}: unknown kind {kind!r}; use 'math' or 'code'")
    need = ("answer",) if kind == "math" else ("entry_point", "tests")
    for name in need:
        if not isinstance(data.get(name), str) or not data[name]:
            raise GoldenSetError(f"{at}: a {kind} item needs {name!r} (a non-empty string)")
    return Item(
        id=data["id"],
        kind=kind,
        prompt=data["prompt"],
        lang=str(data.get("lang", "en")),
        tags=tuple(str(t) for t in data.get("tags", ())),
        answer=data.get("answer"),
        entry_point=data.get("entry_point"),
        tests=data.get("tests"),
        reference=data.get("reference"),
        line=number,
    )
