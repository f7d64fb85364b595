"""Commands that change one flag: rollout, rollback, kill, enable, mark-good."""

from __future__ import annotations

import argparse
from typing import Any

from .context import Context, Subparsers
from .errors import ExitCode
from .percent import format_bps, parse_percent
from .render import format_diff

__all__ = ["register"]


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "rollout",
        parents=[common],
        help="set the share of users on the canary (10%%, 0.01%%, 1000bps)",
        description="Set FLAG's rollout: the share of users bucketed into its rollout variant. "
        "Raising it only adds users; 0% removes everyone.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("percent", metavar="PERCENT", help="10%%, 0.01%% (the smallest step) or 1000bps")
    p.add_argument("--reason", help="why; recorded in the audit log")
    _expected(p)
    p.set_defaults(handler=rollout)

    p = sub.add_parser(
        "rollback",
        parents=[common],
        help="canary to 0%% and the flag restored from the last good version, in one step",
        description="Set FLAG's rollout to 0% AND restore the flag as it was in the last version "
        "marked good (or --to VERSION). Prints how long the server took.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--reason", required=True, help="why (required; recorded in the audit log)")
    p.add_argument("--to", type=int, metavar="VERSION", help="restore from this version instead")
    p.set_defaults(handler=rollback)

    p = sub.add_parser(
        "kill",
        parents=[common],
        help="kill switch: everyone on the default variant now",
        description="Disable FLAG (enabled: false): every user gets its default variant.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--reason", required=True, help="why (required; recorded in the audit log)")
    p.set_defaults(handler=kill)

    p = sub.add_parser(
        "enable",
        parents=[common],
        help="undo the kill switch",
        description="Enable FLAG again (enabled: true); its rules and rollout apply again.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--reason", help="why; recorded in the audit log")
    p.set_defaults(handler=enable)

    p = sub.add_parser(
        "mark-good",
        parents=[common],
        help="mark a document version known-good (rollback restores it)",
        description="Mark VERSION (default: the current version) of the environment known-good.",
    )
    p.add_argument("version", nargs="?", type=int, help="document version (default: current)")
    p.add_argument("--reason", help="why; recorded in the audit log")
    p.set_defaults(handler=mark_good)


def _expected(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expected-version",
        type=int,
        metavar="VERSION",
        help="refuse (exit 3) unless the environment is still at VERSION",
    )


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _find(diff: list[dict[str, Any]], suffix: str) -> dict[str, Any] | None:
    return next((d for d in diff if str(d.get("path", "")).endswith(suffix)), None)


def _versions(change: dict[str, Any]) -> str:
    if change.get("changed", True):
        return f"version {change.get('previous_version')} -> {change.get('version')}"
    return f"version {change.get('version')}, unchanged"


def rollout(args: argparse.Namespace, ctx: Context) -> int:
    bps = parse_percent(args.percent)
    change = ctx.api.post(
        ctx.api.env_path("flags", args.flag, "rollout"),
        _body(bps=bps, reason=args.reason, expected_version=args.expected_version),
    )
    if ctx.json_output:
        ctx.emit_json(change)
        return ExitCode.OK
    entry = _find(change.get("diff", []), "rollout_bps")
    if entry is not None and isinstance(entry.get("before"), int):
        what = f"rollout {format_bps(entry['before'])} -> {format_bps(bps)}"
    elif change.get("changed", True):
        what = f"rollout -> {format_bps(bps)}"
    else:
        what = f"rollout already {format_bps(bps)}"
    ctx.out(
        f"{args.flag}: {what} in {change.get('environment', ctx.environment)} ({_versions(change)})"
    )
    return ExitCode.OK


def rollback(args: argparse.Namespace, ctx: Context) -> int:
    change = ctx.api.post(
        ctx.api.env_path("flags", args.flag, "rollback"),
        _body(reason=args.reason, to_version=args.to),
    )
    elapsed_ms = ctx.api.last_elapsed_s * 1000
    if ctx.json_output:
        ctx.emit_json({**change, "elapsed_s": round(ctx.api.last_elapsed_s, 6)})
        return ExitCode.OK
    env = change.get("environment", ctx.environment)
    ctx.out(
        f"rolled back {args.flag} in {env} in {elapsed_ms:.0f} ms: rollout 0%, flag restored from "
        f"version {change.get('restored_from')}; now version {change.get('version')} "
        f"(state before the rollback kept as version {change.get('snapshot_version')})"
    )
    diff = change.get("diff", [])
    if diff:
        ctx.out(format_diff(diff))
    return ExitCode.OK


def kill(args: argparse.Namespace, ctx: Context) -> int:
    return _set_enabled(args, ctx, enabled=False)


def enable(args: argparse.Namespace, ctx: Context) -> int:
    return _set_enabled(args, ctx, enabled=True)


def _set_enabled(args: argparse.Namespace, ctx: Context, *, enabled: bool) -> int:
    change = ctx.api.post(
        ctx.api.env_path("flags", args.flag, "enabled"),
        _body(enabled=enabled, reason=args.reason),
    )
    if ctx.json_output:
        ctx.emit_json(change)
        return ExitCode.OK
    env = change.get("environment", ctx.environment)
    if enabled:
        state = "enabled" if change.get("changed", True) else "already enabled"
    else:
        state = (
            "killed: everyone on its default variant"
            if change.get("changed", True)
            else ("already killed")
        )
    ctx.out(f"{args.flag}: {state} in {env} ({_versions(change)})")
    return ExitCode.OK


def mark_good(args: argparse.Namespace, ctx: Context) -> int:
    version = args.version
    if version is None:
        version = ctx.environment_state()["version"]
    result = ctx.api.post(ctx.api.env_path("versions", version, "good"), _body(reason=args.reason))
    if ctx.json_output:
        ctx.emit_json(result)
        return ExitCode.OK
    ctx.out(
        f"version {version} of {ctx.environment} is marked good; "
        f"`vibe rollback FLAG --reason ...` restores flags from it"
    )
    return ExitCode.OK
