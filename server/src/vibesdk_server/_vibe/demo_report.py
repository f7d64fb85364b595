"""What ``vibe demo`` measures and how it reports it: pure functions over answered requests.

The demo's load generator turns every simulated user's request into an
:class:`Outcome`; :func:`summarize` folds them into the numbers the demo prints
(users, latency percentiles, fallbacks and output-check failures per variant, per
phase) and :func:`render` turns the summary into aligned text tables.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .render import table

__all__ = ["UNKNOWN", "Flip", "Outcome", "Phase", "percentile", "render", "summarize"]

# The variant of a user whose request failed before the app could say.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Outcome:
    """One simulated user's request through the product app.

    ``assigned`` is the variant the user's bucket picked, ``answered_by`` the one
    that answered (they differ on a fallback); ``error`` is what the *user* saw
    when the app could not answer at all (``None`` for an answer).
    """

    phase: int
    user_id: str
    assigned: str
    answered_by: str
    latency_s: float
    fallback: bool = False
    fallback_reason: str | None = None
    quality_failures: tuple[str, ...] = ()
    error: str | None = None
    feedback_score: int | None = None


@dataclass(frozen=True)
class Phase:
    """A stretch of traffic under one rollout."""

    number: int
    title: str
    rollout_bps: int
    note: str = ""


@dataclass(frozen=True)
class Flip:
    """A change of the flag and how long it took to be served by the app.

    A person's ``vibe`` command (``command_s``: how long it ran; the reach is counted from its
    return) or, with ``actor="guard"``, a write of the guard loop (``command_s`` 0; the reach is
    counted from the write).
    """

    command: str
    version: int | None
    command_s: float
    reach_after_return_s: float | None
    actor: str = "vibe"

    @property
    def reach_total_s(self) -> float | None:
        """From starting the command to the app serving the new version."""
        if self.reach_after_return_s is None:
            return None
        return self.command_s + self.reach_after_return_s


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class _VariantStats:
    users: int = 0
    answered_by: int = 0
    latencies: list[float] = field(default_factory=list)
    fallbacks: int = 0
    fallback_reasons: Counter[str] = field(default_factory=Counter)
    check_failures: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    scores: list[int] = field(default_factory=list)


def summarize(
    outcomes: Iterable[Outcome], phases: Sequence[Phase], flips: Sequence[Flip] = ()
) -> dict[str, Any]:
    """The demo's numbers as plain JSON-able data (the test reads this)."""
    items = list(outcomes)
    per_variant: dict[str, _VariantStats] = {}
    for o in items:
        stats = per_variant.setdefault(o.assigned, _VariantStats())
        stats.users += 1
        if o.error is None:
            stats.latencies.append(o.latency_s)
        else:
            stats.errors += 1
        if o.fallback:
            stats.fallbacks += 1
            stats.fallback_reasons[o.fallback_reason or "unknown"] += 1
        if o.quality_failures:
            stats.check_failures += 1
            stats.checks.update(o.quality_failures)
        if o.feedback_score is not None:
            stats.scores.append(o.feedback_score)
        per_variant.setdefault(o.answered_by, _VariantStats())
    for o in items:
        if o.error is None:
            per_variant[o.answered_by].answered_by += 1

    total = len(items)
    variants = {}
    for name in sorted(per_variant, key=lambda n: (n != "stable", n)):
        s = per_variant[name]
        variants[name] = {
            "users": s.users,
            "share": s.users / total if total else 0.0,
            "answered_by": s.answered_by,
            "p50_s": percentile(s.latencies, 50),
            "p95_s": percentile(s.latencies, 95),
            "fallbacks": s.fallbacks,
            "fallback_reasons": dict(s.fallback_reasons),
            "check_failures": s.check_failures,
            "checks": dict(s.checks),
            "errors": s.errors,
            "feedback": len(s.scores),
            "mean_score": sum(s.scores) / len(s.scores) if s.scores else None,
        }
    phase_rows = []
    for p in phases:
        mine = [o for o in items if o.phase == p.number]
        canary = sum(1 for o in mine if o.assigned not in {"stable", UNKNOWN})
        phase_rows.append(
            {
                "phase": p.number,
                "title": p.title,
                "rollout_bps": p.rollout_bps,
                "users": len(mine),
                "canary_users": canary,
                "canary_share": canary / len(mine) if mine else 0.0,
                "fallbacks": sum(1 for o in mine if o.fallback),
                "errors": sum(1 for o in mine if o.error is not None),
                "note": p.note,
            }
        )
    return {
        "users": total,
        "errors": sum(1 for o in items if o.error is not None),
        "fallbacks": sum(1 for o in items if o.fallback),
        "check_failures": sum(1 for o in items if o.quality_failures),
        "variants": variants,
        "phases": phase_rows,
        "flips": [
            {
                "command": f.command,
                "actor": f.actor,
                "version": f.version,
                "command_s": f.command_s,
                "reach_after_return_s": f.reach_after_return_s,
                "reach_total_s": f.reach_total_s,
            }
            for f in flips
        ],
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def _top(counter: dict[str, int]) -> str:
    if not counter:
        return ""
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))


def render(summary: dict[str, Any]) -> str:
    """Aligned text tables of a :func:`summarize` result."""
    out = []
    out.append(
        table(
            ["phase", "rollout", "users", "on canary", "fallbacks", "user errors", "note"],
            [
                (
                    f"{p['phase']}. {p['title']}",
                    f"{p['rollout_bps'] / 100:g}%",
                    p["users"],
                    f"{p['canary_users']} ({_pct(p['canary_share'])})",
                    p["fallbacks"],
                    p["errors"],
                    p["note"],
                )
                for p in summary["phases"]
            ],
        )
    )
    out.append("")
    out.append(
        table(
            [
                "variant (assigned)",
                "users",
                "share",
                "p50",
                "p95",
                "fallbacks",
                "check failures",
                "feedback",
            ],
            [
                (
                    name,
                    v["users"],
                    _pct(v["share"]),
                    _s(v["p50_s"]),
                    _s(v["p95_s"]),
                    f"{v['fallbacks']}"
                    + (f" ({_top(v['fallback_reasons'])})" if v["fallback_reasons"] else ""),
                    f"{v['check_failures']}" + (f" ({_top(v['checks'])})" if v["checks"] else ""),
                    "-"
                    if v["mean_score"] is None
                    else f"{v['feedback']} x, mean {v['mean_score']:.1f}/5",
                )
                for name, v in summary["variants"].items()
                if v["users"]
            ],
        )
    )
    answered = ", ".join(
        f"{name} {v['answered_by']}" for name, v in summary["variants"].items() if v["answered_by"]
    )
    out.append("")
    out.append(
        f"answers by variant: {answered}; users who saw an error: {summary['errors']} "
        f"of {summary['users']}"
    )
    for f in summary["flips"]:
        if f["reach_after_return_s"] is None:
            reach = "did not reach the app in time"
        elif f.get("actor") == "guard":
            reach = (
                f"the app served version {f['version']} "
                f"{f['reach_after_return_s'] * 1000:.0f} ms after the guard wrote it"
            )
        else:
            reach = (
                f"the app served version {f['version']} "
                f"{f['reach_after_return_s'] * 1000:.0f} ms after the command returned "
                f"({f['reach_total_s']:.2f} s after it started)"
            )
        out.append(f"`{f['command']}`: {reach}")
    return "\n".join(out)
