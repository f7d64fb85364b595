"""``vibe log``: the calls SDKs logged in full for a flag (its variants' ``log_share``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .render import table

__all__ = ["log_table", "register"]

_TEXT_WIDTH = 40
_COLUMNS = (
    "time", "variant", "latency", "tokens", "finish", "failed", "reported", "trace", "question",
    "answer",
)  # fmt: skip
_MAX_LIMIT = 1000


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "log",
        parents=[common],
        help="the calls logged in full for a flag (the request log), newest first",
        description="Show the request log of FLAG, newest first: for each logged call its time, "
        "the variant assigned (-> the one that answered, after a fallback), latency, tokens, "
        "finish reason, failed output checks, whether a user reported the answer, trace id and "
        "the start of the question and the answer. A variant's log_share in the flag document "
        "decides which calls are logged. "
        "--json prints every entry whole (messages included) as a JSON list.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--variant", help="only calls of this (assigned) variant, e.g. canary")
    p.add_argument("--failed", metavar="CHECK", help="only calls that failed this output check")
    p.add_argument(
        "--reported",
        action="store_true",
        help="only calls whose answer a user reported (client.report)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=20,
        help=f"at most this many entries (default 20, max {_MAX_LIMIT})",
    )
    p.set_defaults(handler=show_log)


def show_log(args: argparse.Namespace, ctx: Context) -> int:
    if not 1 <= args.limit <= _MAX_LIMIT:
        raise CliError.usage(f"--limit {args.limit}: give a number from 1 to {_MAX_LIMIT}")
    params: dict[str, Any] = {"flag": args.flag, "variant": args.variant, "limit": args.limit}
    if args.failed is not None:
        params["failed"] = args.failed
    if args.reported:
        params["reported"] = "true"
    entries = ctx.api.get(f"/v1/admin/environments/{ctx.environment}/request-log", params=params)
    if ctx.json_output:
        ctx.emit_json(entries)
        return ExitCode.OK
    if not entries:
        what = f"{args.flag!r}" + ("" if args.variant is None else f", variant {args.variant!r}")
        if args.failed is not None:
            what += f", failed {args.failed!r}"
        if args.reported:
            what += ", reported"
        ctx.out(
            f"no logged calls of {what} in environment {ctx.environment!r}; a variant's "
            "log_share in the flag document turns logging on"
        )
        return ExitCode.OK
    ctx.out(log_table(entries))
    return ExitCode.OK


def log_table(entries: Iterable[Mapping[str, Any]]) -> str:
    """Request-log entries as a table, one line each (``vibe log``, ``vibe incident show``)."""
    return table(
        _COLUMNS,
        ([*_cells(e)] for e in entries),
    )


def _cells(e: Mapping[str, Any]) -> list[object]:
    variant = str(e.get("variant"))
    answered = e.get("answered_by")
    if answered is not None and answered != variant:
        variant += f"->{answered}"
    elif answered is None and e.get("error_type"):
        variant += "->failed"
    tokens_in, tokens_out = e.get("input_tokens"), e.get("output_tokens")
    tokens = None if tokens_in is None and tokens_out is None else f"{tokens_in}/{tokens_out}"
    failed = e.get("failed_checks")
    latency = e.get("latency_s")
    return [
        str(e.get("at", "")).replace("T", " ").removesuffix("Z"),
        variant,
        None if latency is None else f"{latency:.2f}s",
        tokens,
        e.get("finish_reason") or e.get("error_type"),
        ",".join(failed) if failed else None,
        "yes" if e.get("reported") else None,
        e.get("trace_id"),
        _start(_last_text(e.get("input_messages"), "user")),
        _start(_last_text(e.get("output_messages"), "assistant")),
    ]


def _last_text(messages: Any, role: str) -> str | None:
    """The text of the last message of ``role`` (GenAI convention shape); content that a
    redact hook left as plain text is shown as it is."""
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == role:
            parts = message.get("parts") or []
            texts = [
                str(p.get("content", ""))
                for p in parts
                if isinstance(p, Mapping) and p.get("type") == "text"
            ]
            return " ".join(texts)
    return None


def _start(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= _TEXT_WIDTH else line[: _TEXT_WIDTH - 1] + "…"
