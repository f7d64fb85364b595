"""Pure changes to a flag document: what every admin write computes before it is stored.

Each function takes the current flags and returns the new flags; the store
wraps the result in a new immutable version. Nothing here reads a clock or a
database, so every rule is unit-tested directly.

What "good" means (used by rollback when no ``to_version`` is given):

1. The newest version at or below the current one that an operator marked good
   (``vibe mark-good``) and that contains the flag.
2. If no such version exists: the newest version in which the flag's rollout was
   0 -- the flag as it was just before its canary went live.
3. If the flag never had rollout 0: the first version that contained it.

Rollback then stores that version's flag with ``rollout_bps`` forced to 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError

from vibesdk import Flag
from vibesdk.schema import describe_validation_error

from ._errors import InvalidError, NotFoundError

__all__ = [
    "VersionView",
    "apply_flags",
    "find_good_version",
    "rollback_flag",
    "set_enabled",
    "set_rollout",
]


class VersionView(NamedTuple):
    """One stored version as rollback sees it: the flag there (or None) and its good mark."""

    version: int
    flag: Flag | None
    good: bool


def _require(flags: Mapping[str, Flag], key: str, environment: str) -> Flag:
    try:
        return flags[key]
    except KeyError:
        known = ", ".join(sorted(flags)) or "none"
        raise NotFoundError(
            f"flag {key!r} does not exist in environment {environment!r} (flags: {known});"
            " create it with vibe apply"
        ) from None


def _updated(flag: Flag, **changes: Any) -> Flag:
    # model_copy(update=) skips validation; rebuild so every stored flag is valid.
    try:
        return Flag.model_validate({**flag.model_dump(), **changes})
    except ValidationError as exc:
        detail = describe_validation_error(exc).replace("invalid flag document", "invalid flag")
        raise InvalidError(f"{flag.key}: {detail}") from exc


def apply_flags(
    current: Mapping[str, Flag], flags: Sequence[Flag], *, prune: bool
) -> dict[str, Flag]:
    """Upsert ``flags`` (each replaces the flag of that key); with ``prune``, drop the others."""
    keys = [f.key for f in flags]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InvalidError(f"flag key(s) listed twice: {', '.join(dupes)}; list each flag once")
    out = {} if prune else dict(current)
    out.update({f.key: f for f in flags})
    return out


def set_rollout(
    current: Mapping[str, Flag], key: str, bps: int, *, environment: str
) -> dict[str, Flag]:
    """Set one flag's rollout in basis points (0..10000)."""
    flag = _require(current, key, environment)
    if not 0 <= bps <= 10_000:
        raise InvalidError(f"rollout must be 0..10000 basis points (0%..100%), got {bps}")
    if bps > 0 and flag.rollout_variant not in flag.variants:
        raise InvalidError(
            f"flag {key!r} has no variant {flag.rollout_variant!r} to roll out;"
            " add it with vibe apply first"
        )
    out = dict(current)
    out[key] = _updated(flag, rollout_bps=bps)
    return out


def set_enabled(
    current: Mapping[str, Flag], key: str, enabled: bool, *, environment: str
) -> dict[str, Flag]:
    """Flip one flag's kill switch (``enabled=False``: everyone gets the default variant)."""
    flag = _require(current, key, environment)
    out = dict(current)
    out[key] = _updated(flag, enabled=enabled)
    return out


def find_good_version(marked: Iterable[VersionView], history: Iterable[VersionView]) -> int | None:
    """The good version for one flag (see the module docstring); ``None``: it never existed.

    ``marked``: the versions marked good, newest first; ``history``: every version,
    newest first; both at or below the current one. Both are consumed lazily and
    only as far as needed.
    """
    for view in marked:
        if view.flag is not None:
            return view.version
    first: int | None = None
    for view in history:
        if view.flag is None:
            continue
        if view.flag.rollout_bps == 0:
            return view.version
        first = view.version
    return first


def rollback_flag(
    current: Mapping[str, Flag], key: str, good: Flag | None, *, environment: str, version: int
) -> dict[str, Flag]:
    """Restore ``good`` (the flag as it was in the good version) with rollout 0."""
    _require(current, key, environment)
    if good is None:
        raise NotFoundError(
            f"flag {key!r} does not exist in version {version} of environment {environment!r};"
            " pick a version that has it (vibe history)"
        )
    out = dict(current)
    out[key] = _updated(good, rollout_bps=0)
    return out
