"""Reading the flag files that ``vibe apply`` sends, with errors that point at the line.

A flag file is YAML or JSON::

    environment: prod          # optional; must match --env / VIBESDK_ENVIRONMENT
    flags:                     # a list of flags, or a mapping key -> flag
      - key: vibethinker
        rollout_bps: 0
        variants: {...}

A flag may have a ``release:`` section, the plan ``vibe release start`` follows (see
:mod:`vibesdk_server._guard.plan`); it is checked here, kept on the server beside the flag
and never sent to SDKs.

A whole flag document (``vibe status --json``'s ``document``) is accepted too:
its ``schema_version``, ``version`` and ``updated_at`` are ignored. PyYAML is
imported only for YAML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibesdk_server._guard.plan import PlanError, take_sections

from .errors import CliError

__all__ = ["FlagFile", "load_flag_file", "parse_flag_text"]

_IGNORED_KEYS = {"schema_version", "version", "updated_at"}
_KNOWN_KEYS = {"environment", "flags"} | _IGNORED_KEYS


@dataclass(frozen=True)
class FlagFile:
    """What a flag file declares: its flags (as JSON objects) and optionally its environment."""

    flags: list[dict[str, Any]]
    environment: str | None


def load_flag_file(path: str, *, stdin_text: str | None = None) -> FlagFile:
    """Read ``path`` (``-`` is standard input) and check its shape; raise a usage :class:`CliError`.

    Only the file's shape is checked here; the server validates every flag
    and answers 422 with the location of each problem.
    """
    if path == "-":
        text = stdin_text if stdin_text is not None else ""
        name = "<stdin>"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError.usage(f"cannot read {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError.usage(f"cannot read {path}: {exc}") from exc
        name = path
    return parse_flag_text(text, name=name)


def parse_flag_text(text: str, *, name: str) -> FlagFile:
    """Parse a flag file's text; the format comes from ``name``'s suffix, else from the text."""
    suffix = Path(name).suffix.lower()
    if suffix == ".json" or (suffix not in {".yaml", ".yml"} and text.lstrip()[:1] in {"{", "["}):
        data = _parse_json(text, name)
    else:
        data = _parse_yaml(text, name)
    return _shape(data, name)


def _parse_json(text: str, name: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise CliError.usage(f"{name}: key {key!r} appears twice in one object")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise CliError.usage(
            f"{name}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def _parse_yaml(text: str, name: str) -> Any:
    from vibesdk_server._domain._strict_yaml import YamlError, load

    try:
        return load(text)
    except YamlError as exc:
        raise CliError.usage(f"{name}: {exc}") from exc


def _shape(data: Any, name: str) -> FlagFile:
    if isinstance(data, list):
        return FlagFile(flags=_plans_checked(_flag_list(data, name), name), environment=None)
    if data is None:
        raise CliError.usage(f"{name}: the file is empty; nothing to apply")
    if not isinstance(data, dict):
        raise CliError.usage(f"{name}: expected a mapping with 'flags', got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _KNOWN_KEYS)
    if unknown:
        raise CliError.usage(
            f"{name}: unknown top-level key(s) {', '.join(unknown)}; "
            "a flag file has 'flags' and optionally 'environment'"
        )
    if "flags" not in data:
        raise CliError.usage(f"{name}: no 'flags' in the file; nothing to apply")
    environment = data.get("environment")
    if environment is not None and not isinstance(environment, str):
        raise CliError.usage(f"{name}: 'environment' must be a string")
    raw = data["flags"]
    if isinstance(raw, dict):
        flags = _flag_mapping(raw, name)
    elif isinstance(raw, list):
        flags = _flag_list(raw, name)
    else:
        raise CliError.usage(f"{name}: 'flags' must be a list or a mapping of flags")
    return FlagFile(flags=_plans_checked(flags, name), environment=environment)


def _plans_checked(flags: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """``flags``, once each ``release:`` section is checked (the server checks them again)."""
    try:
        take_sections(flags)
    except PlanError as exc:
        raise CliError.usage(f"{name}: {exc.detail}") from None
    return flags


def _flag_mapping(raw: dict[Any, Any], name: str) -> list[dict[str, Any]]:
    flags = []
    for key, flag in raw.items():
        if not isinstance(flag, dict):
            raise CliError.usage(f"{name}: flags.{key} must be a mapping")
        if flag.get("key", key) != key:
            raise CliError.usage(f"{name}: flags.{key} has key {flag['key']!r}; they must be equal")
        flags.append({"key": key, **flag})
    return flags


def _flag_list(raw: list[Any], name: str) -> list[dict[str, Any]]:
    for i, flag in enumerate(raw):
        if not isinstance(flag, dict):
            raise CliError.usage(f"{name}: flags[{i}] must be a mapping")
        if not isinstance(flag.get("key"), str):
            raise CliError.usage(f"{name}: flags[{i}] has no 'key'")
    keys = [f["key"] for f in raw]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise CliError.usage(f"{name}: flag(s) declared twice: {', '.join(duplicates)}")
    return list(raw)
