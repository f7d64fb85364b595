"""``vibe prompt``: reviewed prompt templates, versioned and bound to a model."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import quote

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .render import table

__all__ = ["register"]


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "prompt",
        help="add, review and list prompt templates",
        description="Prompt templates are immutable versions (1, 2, ...) bound to a model; a "
        "variant may only reference an approved one.",
    )
    commands = group.add_subparsers(dest="prompt_command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "add",
        parents=[common],
        help="register a new version of a prompt (state: pending)",
        description="Register a new version of prompt ID for model M. It starts pending; "
        "another admin approves it with `vibe prompt approve ID VERSION` (four-eyes review: "
        "the server refuses an approval by the version's own author unless it runs with "
        "--allow-self-review).",
    )
    p.add_argument("--id", required=True, dest="prompt_id", help="prompt id (lowercase key)")
    p.add_argument("--model", required=True, help="the model version it was written for")
    p.add_argument(
        "--system-file", required=True, help="file holding the system prompt; - reads stdin"
    )
    p.add_argument(
        "--user-template",
        default="{input}",
        help="how the user's input is wrapped; must contain {input} (default: {input})",
    )
    p.add_argument("--note", help="what changed and why, for the reviewer")
    p.set_defaults(handler=add)

    for verb, state in (("approve", "approved"), ("reject", "rejected")):
        p = commands.add_parser(
            verb,
            parents=[common],
            help=f"mark a pending prompt version {state}",
            description=f"Record your review of prompt ID version VERSION: {state}.",
        )
        p.add_argument("prompt_id", metavar="ID", help="prompt id")
        p.add_argument("version", type=int, metavar="VERSION", help="prompt version")
        p.add_argument("--reason", help="why; recorded with the review")
        p.set_defaults(handler=review, verb=verb)

    p = commands.add_parser("list", parents=[common], help="every prompt version and its state")
    p.set_defaults(handler=list_prompts)

    p = commands.add_parser("show", parents=[common], help="one prompt version, with its text")
    p.add_argument("prompt_id", metavar="ID", help="prompt id")
    p.add_argument("version", type=int, metavar="VERSION", help="prompt version")
    p.set_defaults(handler=show)


def _read_system(path: str, ctx: Context) -> str:
    if path == "-":
        return ctx.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError.usage(f"cannot read {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError.usage(f"cannot read {path}: {exc}") from exc


def add(args: argparse.Namespace, ctx: Context) -> int:
    if "{input}" not in args.user_template:
        raise CliError.usage(
            "--user-template must contain the placeholder {input} (where the user's text goes)"
        )
    body = {
        "id": args.prompt_id,
        "system": _read_system(args.system_file, ctx),
        "user_template": args.user_template,
        "model": args.model,
        "note": args.note,
    }
    prompt = ctx.api.post("/v1/admin/prompts", body)
    if ctx.json_output:
        ctx.emit_json(prompt)
        return ExitCode.OK
    ctx.out(
        f"added prompt {prompt.get('id')} version {prompt.get('version')} for model "
        f"{prompt.get('model')} ({prompt.get('state')}); another admin reviews it with: "
        f"vibe prompt approve {prompt.get('id')} {prompt.get('version')}"
    )
    return ExitCode.OK


def review(args: argparse.Namespace, ctx: Context) -> int:
    body = {} if args.reason is None else {"reason": args.reason}
    prompt = ctx.api.post(
        f"/v1/admin/prompts/{quote(args.prompt_id, safe='')}/versions/{args.version}/{args.verb}",
        body,
    )
    if ctx.json_output:
        ctx.emit_json(prompt)
        return ExitCode.OK
    ctx.out(f"prompt {args.prompt_id}@{args.version}: {prompt.get('state')}")
    return ExitCode.OK


def list_prompts(args: argparse.Namespace, ctx: Context) -> int:
    prompts = ctx.api.get("/v1/admin/prompts")
    if ctx.json_output:
        ctx.emit_json(prompts)
        return ExitCode.OK
    if not prompts:
        ctx.out("no prompts yet; add one with `vibe prompt add`")
        return ExitCode.OK
    ctx.out(
        table(
            ["id", "version", "state", "model", "author", "reviewer", "created"],
            (
                [
                    p.get("id"),
                    p.get("version"),
                    p.get("state"),
                    p.get("model"),
                    p.get("author"),
                    p.get("reviewer"),
                    p.get("created_at"),
                ]
                for p in prompts
            ),
        )
    )
    return ExitCode.OK


def show(args: argparse.Namespace, ctx: Context) -> int:
    prompt = ctx.api.get(
        f"/v1/admin/prompts/{quote(args.prompt_id, safe='')}/versions/{args.version}"
    )
    if ctx.json_output:
        ctx.emit_json(prompt)
        return ExitCode.OK
    ctx.out(
        f"prompt {prompt.get('id')}@{prompt.get('version')}  state {prompt.get('state')}  "
        f"model {prompt.get('model')}  author {prompt.get('author')}"
        + (f"  reviewer {prompt['reviewer']}" if prompt.get("reviewer") else "")
    )
    ctx.out(f"user template: {prompt.get('user_template')}")
    ctx.out("system:")
    ctx.out(str(prompt.get("system", "")))
    return ExitCode.OK
