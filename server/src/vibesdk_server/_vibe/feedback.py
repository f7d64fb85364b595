"""``vibe feedback``: what users said about a flag's answers (scores and reports), per variant."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from .context import Context, Subparsers
from .errors import CliError, ExitCode
from .render import table

__all__ = ["parse_since", "register"]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_COMMENT_WIDTH = 60


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "feedback",
        parents=[common],
        help="users' scores, comments and reports on a flag's answers, per variant",
        description="Show what users said about FLAG's answers: per variant the count, mean and "
        "low (1-2) scores they gave (client.feedback) and the answers they reported "
        "(client.report); then the newest scores and reports, with comments, reasons and "
        "trace ids.",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument("--variant", help="only this variant (e.g. canary)")
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only feedback from WHEN on: a duration back from now (30m, 2h, 7d, 1w) or a date "
        "or time (2026-12-05, 2026-12-05T14:00Z; no zone = UTC)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=20,
        help="at most this many scores, and as many reports, listed (default 20)",
    )
    p.set_defaults(handler=feedback)


def parse_since(text: str, *, now: Callable[[], dt.datetime] | None = None) -> dt.datetime:
    """``--since`` as a UTC time: ``30m``/``2h``/``7d``/``1w`` back from now, or ISO 8601."""
    value = text.strip()
    match = _DURATION.match(value)
    if match:
        current = (now or (lambda: dt.datetime.now(dt.timezone.utc)))()
        return current - dt.timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        # Python 3.10's fromisoformat takes neither "Z" nor a date alone with a zone.
        when = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise CliError.usage(
            f"--since {text!r}: give a duration back from now (30m, 2h, 7d, 1w) "
            "or a date or time (2026-12-05, 2026-12-05T14:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= _COMMENT_WIDTH else line[: _COMMENT_WIDTH - 1] + "…"


def feedback(args: argparse.Namespace, ctx: Context) -> int:
    if args.limit < 1:
        raise CliError.usage(f"--limit {args.limit}: give 1 or more")
    since = None if args.since is None else parse_since(args.since)
    params: dict[str, Any] = {
        "environment": ctx.environment,
        "flag": args.flag,
        "variant": args.variant,
        "since": None if since is None else since.isoformat(),
    }
    summary = ctx.api.get("/v1/admin/feedback/summary", params=params)
    entries = ctx.api.get("/v1/admin/feedback", params={**params, "limit": args.limit})
    reports = ctx.api.get("/v1/admin/reports", params={**params, "limit": args.limit})
    if ctx.json_output:
        ctx.emit_json({"summary": summary, "entries": entries, "reports": reports})
        return ExitCode.OK
    scope = f"{args.flag!r}" + ("" if args.variant is None else f", variant {args.variant!r}")
    when = "" if since is None else f" since {since.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    if not summary:
        ctx.out(f"no feedback on {scope} in environment {ctx.environment!r}{when}")
        return ExitCode.OK
    ctx.out(f"feedback on {scope} in environment {ctx.environment!r}{when}")
    ctx.out()
    ctx.out(
        table(
            ["variant", "scores", "mean score", "low (1-2)", "reports"],
            (
                [
                    v.get("variant"),
                    v.get("count"),
                    None if v.get("mean_score") is None else f"{v['mean_score']:.2f}",
                    v.get("low_scores"),
                    v.get("reports"),
                ]
                for v in summary
            ),
        )
    )
    _listing(
        ctx,
        "scores",
        sum(int(v.get("count", 0)) for v in summary),
        ["at", "variant", "score", "user", "comment", "trace"],
        [
            [
                e.get("at"),
                e.get("variant"),
                e.get("score"),
                e.get("user_id"),
                _short(e.get("comment")),
                e.get("trace_id"),
            ]
            for e in entries
        ],
    )
    _listing(
        ctx,
        "reports",
        sum(int(v.get("reports", 0)) for v in summary),
        ["at", "variant", "user", "reason", "trace"],
        [
            [
                r.get("at"),
                r.get("variant"),
                r.get("user_id"),
                _short(r.get("reason")),
                r.get("trace_id"),
            ]
            for r in reports
        ],
    )
    return ExitCode.OK


def _listing(
    ctx: Context, what: str, total: int, headers: list[str], rows: list[list[object]]
) -> None:
    """A titled table of the newest rows, saying how many of ``total`` it shows; none if empty."""
    if not rows:
        return
    ctx.out()
    ctx.out(f"newest {len(rows)} of {total} {what}:" if total > len(rows) else f"{what}:")
    ctx.out(table(headers, rows))
