"""``vibe apply FILE``: declare flags in a YAML/JSON file, see the diff, then apply it."""

from __future__ import annotations

import argparse
from typing import Any

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .files import FlagFile, load_flag_file
from .render import format_diff

__all__ = ["register"]


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "apply",
        parents=[common],
        help="apply a flag file (YAML or JSON); shows the diff first",
        description="Send the flags declared in FILE to the environment. The diff is computed by "
        "the server (a dry run) and shown first; on a terminal you are asked to confirm unless "
        "--yes. The write is refused (exit 3) if the environment changed after the diff was shown.",
    )
    p.add_argument("file", metavar="FILE", help="flag file, .yaml/.yml or .json; - reads stdin")
    p.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    p.add_argument("--dry-run", action="store_true", help="only show the diff; write nothing")
    p.add_argument(
        "--prune", action="store_true", help="also delete flags that are not in the file"
    )
    p.add_argument("--reason", help="why; recorded in the audit log")
    p.add_argument(
        "--expected-version",
        type=int,
        metavar="VERSION",
        help="refuse (exit 3) unless the environment is still at VERSION",
    )
    p.set_defaults(handler=apply)


def apply(args: argparse.Namespace, ctx: Context) -> int:
    flag_file = _load(args, ctx)
    expected = args.expected_version
    if expected is None:
        # Pin the version the diff is computed against, so the write cannot
        # silently include someone else's change made in between.
        expected = ctx.environment_state()["version"]
    body: dict[str, Any] = {"flags": flag_file.flags, "prune": args.prune}
    body["expected_version"] = expected
    if args.reason is not None:
        body["reason"] = args.reason
    path = ctx.api.env_path("apply")
    preview = ctx.api.post(path, {**body, "dry_run": True})
    diff = preview.get("diff", [])
    changed = bool(preview.get("changed", bool(diff)))
    if not ctx.json_output:
        if changed:
            ctx.out(f"changes to {ctx.environment} (version {expected}):")
            ctx.out(format_diff(diff))
        else:
            ctx.out(f"no changes: {ctx.environment} already matches {args.file} (v{expected})")
    if args.dry_run or not changed:
        if ctx.json_output:
            ctx.emit_json({"dry_run": preview, "applied": None})
        return ExitCode.OK
    if not args.yes and ctx.interactive():
        answer = ctx.ask(f"apply {len(diff)} change(s) to {ctx.environment}? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            ctx.out("nothing applied")
            return ExitCode.REFUSED
    result = _write(ctx, path, {**body, "dry_run": False})
    if ctx.json_output:
        ctx.emit_json({"dry_run": preview, "applied": result})
        return ExitCode.OK
    ctx.out(
        f"applied to {result.get('environment', ctx.environment)}: version "
        f"{result.get('previous_version')} -> {result.get('version')} "
        f"(audit #{result.get('audit_id')})"
    )
    return ExitCode.OK


def _load(args: argparse.Namespace, ctx: Context) -> FlagFile:
    """Read the file; a file that names its environment selects it, unless ``--env`` or
    ``VIBESDK_ENVIRONMENT`` names another one (then nothing is sent: exit 2)."""
    stdin_text = ctx.stdin.read() if args.file == "-" else None
    flag_file = load_flag_file(args.file, stdin_text=stdin_text)
    if flag_file.environment is not None and flag_file.environment != ctx.environment:
        if args.env_given:
            raise CliError.usage(
                f"{args.file} is for environment {flag_file.environment!r} but --env /"
                f" VIBESDK_ENVIRONMENT says {ctx.environment!r}; fix one of them"
            )
        ctx.settings = ctx.settings.model_copy(update={"environment": flag_file.environment})
    return flag_file


def _write(ctx: Context, path: str, body: dict[str, Any]) -> Any:
    try:
        return ctx.api.post(path, body)
    except CliError as exc:
        if exc.code == ExitCode.CONFLICT:
            raise CliError(
                f"conflict: {exc.detail} — the environment changed after the diff was shown; "
                "run `vibe apply` again to see the new diff",
                ExitCode.CONFLICT,
            ) from exc
        raise
