"""``vibe eval schedule``: have vibe-server evaluate a flag every day, list and remove schedules.

    vibe eval schedule FLAG --daily HH:MM [--set PATH] [--variants LIST] [--repeat N]
    vibe eval schedule FLAG --off
    vibe eval schedule FLAG           # the flag's schedule
    vibe eval schedule                # every schedule of the environment

A ``--set`` file is checked here, by the parser ``vibe eval run`` uses, and sent to the server
with the schedule (the server cannot read this machine's files); nothing is stored unless the
time, the set, the flag and the variants are all good.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .context import Context
from .errors import CliError, ExitCode
from .render import table

__all__ = ["register_schedule"]


def register_schedule(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``schedule`` to ``vibe eval``'s sub-commands."""
    p = commands.add_parser(
        "schedule",
        parents=[common],
        help="have vibe-server evaluate a flag every day; list or remove schedules",
        description="Store a daily evaluation of FLAG on the flag server, which runs it itself "
        "(like vibe eval run) at HH:MM UTC; --off removes it. Without --daily or --off: show "
        "FLAG's schedule, or without FLAG every schedule of the environment.",
    )
    p.add_argument("flag", nargs="?", help="flag key")
    p.add_argument("--daily", metavar="HH:MM", help="time of day the run starts, in UTC")
    p.add_argument("--off", action="store_true", help="remove FLAG's schedule")
    p.add_argument(
        "--set",
        metavar="PATH",
        type=Path,
        help="golden set, JSON Lines, stored with the schedule (default: the set vibesdk-server "
        "ships)",
    )
    p.add_argument(
        "--variants",
        metavar="LIST",
        help="comma-separated variants to evaluate (default: the flag's default and rollout "
        "variants on the day of each run)",
    )
    p.add_argument(
        "--repeat", type=int, default=None, metavar="N", help="answers per item and variant (1)"
    )
    p.set_defaults(handler=schedule)


def _check(args: argparse.Namespace) -> None:
    setting = [
        name
        for name, value in (
            ("--set", args.set),
            ("--variants", args.variants),
            ("--repeat", args.repeat),
        )
        if value is not None
    ]
    if args.off and args.daily is not None:
        raise CliError.usage("--off and --daily: give one of them")
    if (args.off or args.daily is not None) and args.flag is None:
        raise CliError.usage("name the flag: vibe eval schedule FLAG --daily HH:MM (or --off)")
    if setting and args.daily is None:
        raise CliError.usage(f"{', '.join(setting)} set(s) a schedule: add --daily HH:MM")
    if args.repeat is not None and args.repeat < 1:
        raise CliError.usage(f"--repeat {args.repeat}: give 1 or more")


def schedule(args: argparse.Namespace, ctx: Context) -> int:
    _check(args)
    base = ctx.api.env_path("eval-schedules")
    one = None if args.flag is None else ctx.api.env_path("eval-schedules", args.flag)
    if args.daily is not None:
        stored = ctx.api.request("PUT", str(one), json=_body(args))
        if ctx.json_output:
            ctx.emit_json(stored)
        else:
            ctx.out(
                f"evaluation of {args.flag!r} in {ctx.environment!r} scheduled every day at "
                f"{stored['daily_at']} UTC (revision {stored['revision']}): set "
                f"{stored['set_name']} ({stored['items']} items), variants "
                f"{_variants(stored)}, {stored['repeats']} answer(s) per item; runs show in "
                f"vibe eval history {args.flag}"
            )
        return ExitCode.OK
    if args.off:
        removed = ctx.api.request("DELETE", str(one))
        if ctx.json_output:
            ctx.emit_json(removed)
        else:
            ctx.out(
                f"removed the daily evaluation of {args.flag!r} in {ctx.environment!r} "
                f"(was at {removed['daily_at']} UTC)"
            )
        return ExitCode.OK
    found = ctx.api.get(base) if one is None else [ctx.api.get(one)]
    if ctx.json_output:
        ctx.emit_json(found if args.flag is None else found[0])
        return ExitCode.OK
    if not found:
        ctx.out(
            f"no evaluation schedules in {ctx.environment!r}; add one with "
            "vibe eval schedule FLAG --daily HH:MM"
        )
        return ExitCode.OK
    ctx.out(
        table(
            ["flag", "daily (UTC)", "set", "items", "variants", "repeat", "last day", "revision"],
            (
                [
                    s["flag_key"],
                    s["daily_at"],
                    s["set_name"],
                    s["items"],
                    _variants(s),
                    s["repeats"],
                    s["last_day"],
                    s["revision"],
                ]
                for s in found
            ),
        )
    )
    return ExitCode.OK


def _variants(schedule: dict[str, Any]) -> str:
    return ",".join(schedule["variants"] or []) or "default and rollout"


def _body(args: argparse.Namespace) -> dict[str, Any]:
    from vibesdk_server._eval.golden import GoldenSetError, load_set
    from vibesdk_server._eval.schedule import parse_daily

    try:
        body: dict[str, Any] = {"daily_at": parse_daily(args.daily)}
    except ValueError as exc:
        raise CliError.usage(str(exc)) from None
    if args.set is not None:
        try:
            load_set(args.set)  # a bad set is refused here, by line, before anything is sent
        except GoldenSetError as exc:
            raise CliError.usage(str(exc)) from None
        body["set_name"] = str(args.set)
        body["set_text"] = args.set.read_text(encoding="utf-8")
    if args.variants is not None:
        names = list(dict.fromkeys(v.strip() for v in args.variants.split(",") if v.strip()))
        if not names:
            raise CliError.usage(f"--variants {args.variants!r}: name at least one variant")
        body["variants"] = names
    if args.repeat is not None:
        body["repeats"] = args.repeat
    return body
