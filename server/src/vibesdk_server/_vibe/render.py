"""Plain-text rendering: aligned tables, diffs and values, for humans.

Pure functions returning strings; the commands decide where they go. Machines
use ``--json`` instead, so this output may change between releases.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .percent import format_bps

__all__ = ["format_diff", "format_value", "table", "yes_no"]

_MAX_VALUE = 60
_ABSENT = object()


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces, with an upper-case header row.

    ``None`` cells print as ``-``; trailing spaces are trimmed from every line.
    """
    cells = [[h.upper() for h in headers]]
    cells += [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def yes_no(value: object) -> str:
    return "yes" if value else "no"


def format_value(value: Any, *, path: str = "") -> str:
    """One short line for a diff value: ``rollout_bps`` as a percentage, long text cut."""
    if path.endswith("rollout_bps") and isinstance(value, int) and not isinstance(value, bool):
        return f"{format_bps(value)} ({value}bps)"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 1] + "…"
    return text


def _flag_summary(path: str, value: Any) -> str | None:
    """A whole flag added or removed reads as its gist, not as 60 characters of JSON."""
    parts = path.split(".")
    if len(parts) != 2 or parts[0] != "flags" or not isinstance(value, Mapping):
        return None
    bps = value.get("rollout_bps", 0)
    rollout = format_bps(bps) if isinstance(bps, int) and not isinstance(bps, bool) else str(bps)
    variants = value.get("variants")
    names = []
    if isinstance(variants, Mapping):
        for name, variant in variants.items():
            model = variant.get("model") if isinstance(variant, Mapping) else None
            names.append(f"{name}={model}" if model else str(name))
    enabled = "" if value.get("enabled", True) else ", disabled"
    return f"flag: rollout {rollout}{enabled}, variants {', '.join(names) or '-'}"


def format_diff(diff: Sequence[Mapping[str, Any]]) -> str:
    """One line per change: ``~ path: before -> after``, ``+ path: after``, ``- path: before``.

    A missing or ``null`` ``before`` means the path was added; a missing or
    ``null`` ``after`` means it was removed; a whole flag added or removed is
    summarized (rollout, variants and their models). An empty diff says so.
    """
    if not diff:
        return "no changes"
    lines = []
    width = max(len(str(entry.get("path", ""))) for entry in diff)
    for entry in diff:
        path = str(entry.get("path", ""))
        before = entry.get("before", _ABSENT)
        after = entry.get("after", _ABSENT)
        if before is _ABSENT or before is None:
            shown = _flag_summary(path, after) or format_value(after, path=path)
            lines.append(f"+ {path.ljust(width)}  {shown}")
        elif after is _ABSENT or after is None:
            shown = _flag_summary(path, before) or format_value(before, path=path)
            lines.append(f"- {path.ljust(width)}  {shown}")
        else:
            old, new = format_value(before, path=path), format_value(after, path=path)
            lines.append(f"~ {path.ljust(width)}  {old} -> {new}")
    return "\n".join(lines)
