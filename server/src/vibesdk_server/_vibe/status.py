"""Read-only commands: status, history, diff, audit."""

from __future__ import annotations

import argparse
from typing import Any

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .percent import format_bps
from .render import format_diff, table, yes_no

__all__ = ["register", "status_table"]


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "status",
        parents=[common],
        help="every flag: enabled, rollout, variants with model and prompt",
        description="Show the environment's document version, the version marked good, and for "
        "each flag: enabled, rollout, and each variant's model and prompt (id@version).",
    )
    p.add_argument("flag", nargs="?", help="only this flag")
    p.set_defaults(handler=status)

    p = sub.add_parser(
        "history",
        parents=[common],
        help="document versions, newest first: who, when, what, why",
        description="List the environment's versions, newest first (optionally only those that "
        "touched FLAG). A * marks versions marked good.",
    )
    p.add_argument("flag", nargs="?", help="only versions that changed this flag")
    p.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    p.set_defaults(handler=history)

    p = sub.add_parser(
        "diff",
        parents=[common],
        help="what changed in a flag between two versions",
        description="Show what changed in FLAG between document versions V1 and V2.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("v1", type=int, metavar="V1", help="older version")
    p.add_argument("v2", type=int, metavar="V2", help="newer version")
    p.set_defaults(handler=diff)

    p = sub.add_parser(
        "audit",
        parents=[common],
        help="the audit log of the environment, newest first",
        description="Show the audit log: who did what, when and why.",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    p.set_defaults(handler=audit)


def status_table(flags: dict[str, Any]) -> str:
    """One row per variant, the flag's own columns on its first row; ROLE says how users get it."""
    rows: list[list[object]] = []
    for key in sorted(flags):
        flag = flags[key]
        variants = flag.get("variants") or {}
        default = flag.get("default_variant", "stable")
        rollout_variant = flag.get("rollout_variant", "canary")
        bps = int(flag.get("rollout_bps", 0))
        rule_variants = {r.get("variant") for r in flag.get("rules") or []}
        first = True
        for name in sorted(variants, key=lambda n: (n != default, n != rollout_variant, n)):
            variant = variants[name]
            prompt = variant.get("prompt")
            prompt_ref = f"{prompt.get('id')}@{prompt.get('version')}" if prompt else None
            role: str | None
            if name == default:
                role = "default"
            elif name == rollout_variant:
                role = "rollout"
            else:
                role = "rule" if name in rule_variants else None
            rows.append(
                [
                    key if first else "",
                    yes_no(flag.get("enabled", True)) if first else "",
                    format_bps(bps) if first else "",
                    name,
                    role,
                    variant.get("model"),
                    prompt_ref,
                ]
            )
            first = False
        if first:
            rows.append(
                [key, yes_no(flag.get("enabled", True)), format_bps(bps), None, None, None, None]
            )
    return table(["flag", "enabled", "rollout", "variant", "role", "model", "prompt"], rows)


def status(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.environment_state()
    document = env.get("document") or {}
    flags: dict[str, Any] = document.get("flags") or {}
    if args.flag is not None:
        if args.flag not in flags:
            known = ", ".join(sorted(flags)) or "none"
            raise CliError(
                f"no flag {args.flag!r} in environment {ctx.environment!r} (flags: {known})",
                ExitCode.NOT_FOUND,
            )
        flags = {args.flag: flags[args.flag]}
    if ctx.json_output:
        ctx.emit_json({**env, "document": {**document, "flags": flags}})
        return ExitCode.OK
    good = env.get("good_version")
    ctx.out(
        f"environment {env.get('environment', ctx.environment)}  version {env.get('version')}  "
        f"good version {'-' if good is None else good}  server {ctx.settings.server_url}"
    )
    ctx.out()
    ctx.out(status_table(flags) if flags else "no flags yet; declare some with `vibe apply FILE`")
    return ExitCode.OK


def history(args: argparse.Namespace, ctx: Context) -> int:
    rows = ctx.api.get(ctx.api.env_path("history"), params={"flag": args.flag, "limit": args.limit})
    if ctx.json_output:
        ctx.emit_json(rows)
        return ExitCode.OK
    if not rows:
        ctx.out("no history yet")
        return ExitCode.OK
    ctx.out(
        table(
            ["version", "at", "actor", "action", "flags", "reason"],
            (
                [
                    None
                    if r.get("version") is None
                    else f"{r.get('version')}{'*' if r.get('good') else ''}",
                    r.get("at"),
                    r.get("actor"),
                    r.get("action"),
                    ", ".join(r.get("flags") or []) or None,
                    r.get("reason"),
                ]
                for r in rows
            ),
        )
    )
    return ExitCode.OK


def diff(args: argparse.Namespace, ctx: Context) -> int:
    result = ctx.api.get(
        ctx.api.env_path("diff"), params={"from": args.v1, "to": args.v2, "flag": args.flag}
    )
    if ctx.json_output:
        ctx.emit_json(result)
        return ExitCode.OK
    ctx.out(f"{args.flag}: version {result.get('from', args.v1)} -> {result.get('to', args.v2)}")
    ctx.out(format_diff(result.get("diff", [])))
    return ExitCode.OK


def audit(args: argparse.Namespace, ctx: Context) -> int:
    rows = ctx.api.get(
        "/v1/admin/audit", params={"environment": ctx.environment, "limit": args.limit}
    )
    if ctx.json_output:
        ctx.emit_json(rows)
        return ExitCode.OK
    if not rows:
        ctx.out("no audit entries yet")
        return ExitCode.OK
    ctx.out(
        table(
            ["id", "at", "actor", "action", "flag", "version", "reason"],
            (
                [
                    r.get("id"),
                    r.get("at"),
                    r.get("actor"),
                    r.get("action"),
                    r.get("flag_key"),
                    r.get("version"),
                    r.get("reason"),
                ]
                for r in rows
            ),
        )
    )
    return ExitCode.OK
