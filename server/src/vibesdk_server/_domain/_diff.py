"""Structural diff of two JSON values, as ``[{"path", "before", "after"}]``.

Mappings are compared key by key (paths joined with dots, e.g.
``flags.vibethinker.rollout_bps``); lists and scalars are compared whole, so a
change inside ``rules`` shows the old and the new list. A key missing on one
side shows ``None`` there. The output is sorted by path, so it is stable.
"""

from __future__ import annotations

from typing import Any

__all__ = ["diff"]

_MISSING: Any = None


def diff(before: Any, after: Any, *, prefix: str = "") -> list[dict[str, Any]]:
    """Every leaf that differs between ``before`` and ``after``."""
    out: list[dict[str, Any]] = []
    _walk(before, after, prefix, out)
    out.sort(key=lambda d: d["path"])
    return out


def _walk(before: Any, after: Any, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before.keys() | after.keys():
            sub = f"{path}.{key}" if path else str(key)
            _walk(before.get(key, _MISSING), after.get(key, _MISSING), sub, out)
        return
    if before != after or type(before) is not type(after):
        out.append({"path": path or "(document)", "before": before, "after": after})
