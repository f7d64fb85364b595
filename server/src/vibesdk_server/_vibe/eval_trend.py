"""``vibe eval trend``: a flag's golden-set score per variant per day, as a table or a PNG.

The flag server computes the trend (``GET .../eval-trend``, :mod:`vibesdk_server._eval.trend`);
this command prints it, or draws it with matplotlib (the ``eval`` extra) on its Agg backend, so
no display is needed: a line per variant with its 95% interval shaded, the document versions
the runs used and every audited change of the flag as vertical lines.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from .context import Context
from .errors import CliError, ExitCode
from .render import table

__all__ = ["draw_png", "register_trend", "trend"]

_MARKER_STYLE = {
    "rollout": ("#b42318", "--"),
    "document": ("#6b7280", ":"),
    "version": ("#1f5fbf", ":"),
}
_COLORS = ("#1f5fbf", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#0b7285")


def register_trend(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "trend",
        parents=[common],
        help="the flag's golden-set score per variant per day, with changes marked",
    )
    p.add_argument("flag", help="flag key")
    p.add_argument(
        "--days", type=int, default=30, metavar="N", help="the last N days, UTC (default 30)"
    )
    p.add_argument(
        "--png",
        metavar="PATH",
        type=Path,
        help="draw the trend into this PNG file (needs matplotlib: vibesdk-server[eval])",
    )
    p.set_defaults(handler=trend)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def trend(args: argparse.Namespace, ctx: Context) -> int:
    if not 1 <= args.days <= 366:
        raise CliError.usage(f"--days {args.days}: give 1 to 366")
    if args.png is not None and not args.png.parent.is_dir():
        raise CliError.usage(f"--png {args.png}: folder {args.png.parent} does not exist")
    data = ctx.api.get(
        ctx.api.env_path("eval-trend"), params={"flag": args.flag, "days": args.days}
    )
    if args.png is not None:
        draw_png(data, args.png)
    if ctx.json_output:
        ctx.emit_json(data)
        return ExitCode.OK
    if args.png is not None:
        ctx.out(
            f"wrote {args.png} ({len(data['days'])} day(s), {len(data['variants'])} variant(s))"
        )
    _print(ctx, data)
    return ExitCode.OK


def _print(ctx: Context, data: dict[str, Any]) -> None:
    if not data["points"]:
        ctx.out(
            f"no finished evaluation runs of {data['flag']!r} in {data['environment']!r} since"
            f" {data['since']}; start one with vibe eval run {data['flag']}"
        )
    else:
        ctx.out(
            f"golden-set score of {data['flag']!r} in {data['environment']!r} per day (UTC),"
            f" set {data['set']['name']}"
            + (
                f" ({data['other_set_runs']} run(s) on other sets left out)"
                if data["other_set_runs"]
                else ""
            )
        )
        ctx.out()
        ctx.out(
            table(
                ["day", "variant", "runs", "answers", "score", "95% CI", "versions"],
                (
                    [
                        p["day"],
                        p["variant"],
                        len(p["runs"]),
                        p["n"],
                        _pct(p["score"]),
                        None if p["ci95"] is None else f"{p['ci95'][0]:.2f}-{p['ci95'][1]:.2f}",
                        ",".join(map(str, p["document_versions"])),
                    ]
                    for p in data["points"]
                ),
            )
        )
    if data["markers"]:
        ctx.out()
        ctx.out(
            table(
                ["at (UTC)", "change", "what"],
                ([m["at"][:16].replace("T", " "), m["kind"], m["label"]] for m in data["markers"]),
            )
        )
    for alarm in data.get("alarms") or ():
        ctx.out()
        ctx.out(f"alarm: {alarm['message']}")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _days(when: dt.datetime) -> float:
    """``when`` as matplotlib's date number: days since its default epoch, 1970-01-01 UTC."""
    return (when - _EPOCH).total_seconds() / 86400.0


def _noon(day: str) -> float:
    return _days(dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=dt.timezone.utc))


def draw_png(data: dict[str, Any], path: Path) -> None:
    """Draw ``data`` (the server's trend) into the PNG file ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError.usage(
            "--png needs matplotlib: pip install 'vibesdk-server[eval]' (or leave out --png for"
            " a table)"
        ) from None
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    try:
        for i, variant in enumerate(data["variants"]):
            points = [p for p in data["points"] if p["variant"] == variant]
            if not points:
                continue
            color = _COLORS[i % len(_COLORS)]
            x = [_noon(p["day"]) for p in points]
            ax.plot(x, [p["score"] for p in points], marker="o", color=color, label=variant)
            low = [p["ci95"][0] if p["ci95"] else p["score"] for p in points]
            high = [p["ci95"][1] if p["ci95"] else p["score"] for p in points]
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
        for marker in data["markers"]:
            color, style = _MARKER_STYLE.get(marker["kind"], ("#6b7280", ":"))
            at = _days(dt.datetime.fromisoformat(marker["at"].replace("Z", "+00:00")))
            ax.axvline(at, color=color, linestyle=style, linewidth=1)
            ax.annotate(
                marker["label"],
                (at, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize=7,
                color=color,
                ha="right",
                va="top",
            )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("combined score (mean item score)")
        ax.set_title(
            f"{data['flag']} in {data['environment']}: golden-set score per day, 95% interval"
        )
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        fig.autofmt_xdate()
        if data["variants"] and data["points"]:
            ax.legend(loc="lower left")
        else:
            ax.text(0.5, 0.5, "no finished runs", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(path, format="png")
    except OSError as exc:
        raise CliError.usage(f"--png {path}: cannot write it: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
