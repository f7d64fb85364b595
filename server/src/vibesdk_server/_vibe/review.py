"""``vibe review``: score logged answers 1..5, blind, and read the per-variant aggregates."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from vibesdk_server._review.events import LABELS
from vibesdk_server._review.stats import SCORE_MAX, SCORE_MIN, agreement_line

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .render import table

__all__ = ["register"]

_SCALE = ", ".join(f"{n} {label}" for n, label in LABELS.items())


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "review",
        help="score logged answers 1..5 (blind) and read the review figures per variant",
        description="Human review of a flag's logged answers (its request log). `vibe review "
        "next FLAG` shows the next answer for you (the admin token's name is the reviewer): the "
        "question, the system prompt and the answer, never the variant or model, which are "
        "shown once you scored it. `vibe review stats FLAG` shows the mean score per variant "
        "with its 95% interval, and how well reviewers agree.",
    )
    review_sub = p.add_subparsers(dest="review_command", metavar="COMMAND", required=True)
    nxt = review_sub.add_parser(
        "next",
        parents=[common],
        help="show the next answer to review and score it",
        description="Show the next answer of FLAG for you to review (answers users reported "
        "first), then ask for a score and a note. Scores: " + _SCALE + ". In a script, give "
        "--score (and --note) instead: the answer shown is scored without a question; without a "
        "terminal and without --score the answer is only shown. Says so when the queue is empty.",
    )
    nxt.add_argument("flag", help="flag key")
    nxt.add_argument(
        "--score",
        type=int,
        metavar="N",
        help=f"score the answer shown {SCORE_MIN}..{SCORE_MAX} without asking",
    )
    nxt.add_argument("--note", metavar="TEXT", help="why that score (with --score)")
    nxt.set_defaults(handler=review_next)
    st = review_sub.add_parser(
        "stats",
        parents=[common],
        help="review scores per variant (mean, n, 95% interval) and reviewer agreement",
        description="Show FLAG's review scores per variant: how many, their mean and its 95% "
        "Student-t interval; then the agreement between two reviewers on the answers both "
        "scored: the share of equal scores, of scores at most 1 apart, and Cohen's kappa with "
        "quadratic weights (from 10 such answers). --json prints the server's answer.",
    )
    st.add_argument("flag", help="flag key")
    st.set_defaults(handler=review_stats)


def _path(ctx: Context, flag: str, *parts: str) -> str:
    return ctx.api.env_path("flags", flag, "review", *parts)


def review_next(args: argparse.Namespace, ctx: Context) -> int:
    if args.score is not None and not SCORE_MIN <= args.score <= SCORE_MAX:
        raise CliError.usage(f"--score {args.score}: give a whole number from 1 to 5 ({_SCALE})")
    if args.note is not None and args.score is None:
        raise CliError.usage("--note goes with --score N: give the score too")
    answer = ctx.api.get(_path(ctx, args.flag, "next"))
    item = answer.get("item")
    if item is None:
        if ctx.json_output:
            ctx.emit_json(answer)
        else:
            ctx.out(
                f"the review queue of {args.flag!r} in environment {ctx.environment!r} is empty"
                " for you: no logged answer left that you have not scored (a variant's"
                " log_share in the flag document logs answers)"
            )
        return ExitCode.OK
    if ctx.json_output and args.score is None:
        ctx.emit_json(answer)
        return ExitCode.OK
    if not ctx.json_output:
        ctx.out(show_item(item, answer.get("remaining")))
    score, note = args.score, args.note
    if score is None:
        if not ctx.interactive():
            ctx.out(f"\nscore it: vibe review next {args.flag} --score N --note TEXT")
            return ExitCode.OK
        score = _ask_score(ctx)
        if score is None:
            ctx.out("skipped; it stays in your queue")
            return ExitCode.OK
        note = ctx.ask("note (optional): ").strip() or None
    body = {"trace_id": item["trace_id"], "score": score, "note": note}
    stored = ctx.api.post(_path(ctx, args.flag, "scores"), body)
    if ctx.json_output:
        ctx.emit_json(stored)
        return ExitCode.OK
    ctx.out(
        f"scored {stored['score']} ({LABELS[int(stored['score'])]}): trace {stored['trace_id']}"
        f" was variant {stored['variant']!r}"
        + (f", model {stored['model']}" if stored.get("model") else "")
        + (
            f" (answered by {stored['answered_by']!r})"
            if stored.get("answered_by") not in (None, stored["variant"])
            else ""
        )
    )
    return ExitCode.OK


def _ask_score(ctx: Context) -> int | None:
    while True:
        text = ctx.ask(f"score {SCORE_MIN}-{SCORE_MAX} ({_SCALE}; empty skips): ").strip()
        if not text:
            return None
        if text.isdigit() and SCORE_MIN <= int(text) <= SCORE_MAX:
            return int(text)
        ctx.out(f"{text!r} is not a score: type a whole number from 1 to 5")


def show_item(item: Mapping[str, Any], remaining: int | None = None) -> str:
    """A review item as text: the system prompt, the conversation, the answer (whole)."""
    lines = [f"trace {item['trace_id']}" + ("" if remaining is None else f" ({remaining} left)")]
    lines += ["", "system prompt:", _indent(_texts(item.get("system_instructions")))]
    for message in _messages(item.get("input_messages")):
        lines += ["", f"{message[0]}:", _indent(message[1])]
    for message in _messages(item.get("output_messages")):
        lines += ["", "answer:", _indent(message[1])]
    return "\n".join(lines)


def _messages(value: Any) -> list[tuple[str, str]]:
    """``(role, text)`` of GenAI-convention messages; text a redact hook left as it is."""
    if isinstance(value, str):
        return [("text", value)]
    out = []
    for message in value or []:
        if isinstance(message, Mapping):
            out.append((str(message.get("role", "?")), _texts(message.get("parts"))))
    return out


def _texts(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    texts = [
        str(p.get("content", "")) for p in parts or [] if isinstance(p, Mapping) and "content" in p
    ]
    return "\n".join(texts) if texts else "(none)"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines() or [""])


def review_stats(args: argparse.Namespace, ctx: Context) -> int:
    summary = ctx.api.get(_path(ctx, args.flag, "summary"))
    if ctx.json_output:
        ctx.emit_json(summary)
        return ExitCode.OK
    if not summary["variants"]:
        ctx.out(
            f"no review scores for {args.flag!r} in environment {ctx.environment!r} yet;"
            f" vibe review next {args.flag} starts"
        )
        return ExitCode.OK
    ctx.out(
        table(
            ["variant", "scores", "mean", "95% interval"],
            (
                [
                    v["variant"],
                    v["n"],
                    f"{v['mean']:.2f}",
                    None if v["ci95"] is None else f"{v['ci95'][0]:.2f}..{v['ci95'][1]:.2f}",
                ]
                for v in summary["variants"]
            ),
        )
    )
    ctx.out(agreement_line(summary["agreement"], summary["reviewers"]))
    return ExitCode.OK
