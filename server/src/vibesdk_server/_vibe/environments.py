"""``vibe env`` and ``vibe keys``: environments and their SDK keys."""

from __future__ import annotations

import argparse

from .context import Context, Subparsers
from .errors import ExitCode
from .render import table

__all__ = ["register"]


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "env",
        help="list or create environments",
        description="Environments are isolated: "
        "each has its own flag document, versions, good version and SDK keys.",
    )
    commands = group.add_subparsers(dest="env_command", metavar="COMMAND", required=True)
    p = commands.add_parser("list", parents=[common], help="environments and their versions")
    p.set_defaults(handler=list_environments)
    p = commands.add_parser("create", parents=[common], help="create an empty environment")
    p.add_argument("name", help="environment name (lowercase key, e.g. prod)")
    p.set_defaults(handler=create_environment)

    group = sub.add_parser(
        "keys",
        help="SDK keys of the environment",
        description="SDK keys let an application "
        "read its environment's flags and send feedback, nothing else.",
    )
    commands = group.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = commands.add_parser("create", parents=[common], help="create an SDK key (shown once)")
    p.add_argument("--name", required=True, help="what uses it, e.g. web-app")
    p.set_defaults(handler=create_key)


def list_environments(args: argparse.Namespace, ctx: Context) -> int:
    envs = ctx.api.get("/v1/admin/environments")
    if ctx.json_output:
        ctx.emit_json(envs)
        return ExitCode.OK
    ctx.out(
        table(
            ["environment", "version", "good version"],
            ([e.get("name"), e.get("version"), e.get("good_version")] for e in envs),
        )
    )
    return ExitCode.OK


def create_environment(args: argparse.Namespace, ctx: Context) -> int:
    env = ctx.api.post("/v1/admin/environments", {"name": args.name})
    if ctx.json_output:
        ctx.emit_json(env)
        return ExitCode.OK
    ctx.out(
        f"created environment {args.name}; give apps a key with: "
        f"vibe keys create --env {args.name} --name APP"
    )
    return ExitCode.OK


def create_key(args: argparse.Namespace, ctx: Context) -> int:
    created = ctx.api.post(ctx.api.env_path("sdk-keys"), {"name": args.name})
    if ctx.json_output:
        ctx.emit_json(created)
        return ExitCode.OK
    ctx.out(f"SDK key {created.get('name')!s} for {ctx.environment} (shown only now; store it):")
    ctx.out(str(created.get("key")))
    return ExitCode.OK
