"""The golden-set trend of a flag: the combined score per variant per day (pure functions).

The flag server computes it (``GET /v1/admin/environments/{env}/eval-trend``) from the stored
runs, and both ``vibe eval trend`` and the dashboard read that one answer. A day (UTC, by when
the run finished) pools every answer of the variant in the finished runs of that day on the
trend's golden set; its score is the mean item score (as in a run's summary) and its 95%
interval the Wilson interval of that mean: scores lie in [0, 1], where the variance is at most
``mean x (1 - mean)``, so the interval is that of a proportion, exact for right/wrong scores and
conservative for partial ones. Runs on another set are left out (the trend says how many):
scores of different sets are not comparable.

Marked on the trend: the document versions the runs used, and every change to the flag from
the audit log (``rollout`` for rollouts, rollbacks, kills and releases; ``document`` for the
rest), so a drop can be read against what changed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vibesdk_server._eval.summary import wilson_interval

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "ROLLOUT_ACTIONS", "flag_trend", "trend"]

DEFAULT_DAYS = 30
MAX_DAYS = 366
ROLLOUT_ACTIONS = frozenset({"rollout", "rollback", "kill", "enable"})
"""Audited actions (besides every ``release_*``) that change who gets the canary."""


def _day(stamp: str) -> str:
    return stamp[:10]


def _marker_kind(action: str) -> str:
    return "rollout" if action in ROLLOUT_ACTIONS or action.startswith("release_") else "document"


def _rollout_bps(entry: Mapping[str, Any]) -> int | None:
    after = entry.get("after")
    if isinstance(after, dict) and isinstance(after.get("rollout_bps"), int):
        return int(after["rollout_bps"])
    return None


def _markers(
    runs: Sequence[Mapping[str, Any]], audit: Iterable[Mapping[str, Any]], first_day: str
) -> list[dict[str, Any]]:
    markers: list[dict[str, Any]] = []
    used: int | None = None
    for run in runs:  # oldest first
        version = int(run["document_version"])
        if version != used:
            markers.append(
                {
                    "at": run["finished_at"],
                    "day": _day(run["finished_at"]),
                    "kind": "version",
                    "version": version,
                    "label": f"runs use v{version}",
                }
            )
            used = version
    for entry in audit:
        action = str(entry["action"])
        if entry.get("version") is None or action.startswith("eval_"):
            continue
        if _day(entry["at"]) < first_day:
            continue
        bps = _rollout_bps(entry)
        label = f"{action} v{entry['version']}"
        markers.append(
            {
                "at": entry["at"],
                "day": _day(entry["at"]),
                "kind": _marker_kind(action),
                "version": entry["version"],
                "label": label if bps is None else f"{label} ({bps / 100:g}%)",
            }
        )
    return sorted(markers, key=lambda m: (m["at"], m["kind"]))


def trend(
    runs: Sequence[Mapping[str, Any]],
    rows: Iterable[Mapping[str, Any]],
    audit: Iterable[Mapping[str, Any]] = (),
    *,
    set_digest: str | None = None,
) -> dict[str, Any]:
    """The per-day, per-variant trend of ``runs`` (any order; unfinished ones are skipped).

    ``rows`` are their results (``run_id``, ``variant``, ``score``); ``audit`` the flag's audit
    entries (``at``, ``action``, ``version``, ``after``). ``set_digest`` picks the golden set
    (default: that of the newest finished run). Returns ``set`` (name and digest),
    ``variants``, ``days`` (sorted), ``points`` (one per day and variant with answers: ``day``,
    ``variant``, ``runs``, ``n``, ``score``, ``ci95``, ``document_versions``), ``markers``
    (``at``, ``day``, ``kind``: ``version`` / ``rollout`` / ``document``, ``version``,
    ``label``) and ``other_set_runs`` (finished runs left out for being on another set).
    """
    finished = sorted((r for r in runs if r.get("finished_at")), key=lambda r: r["finished_at"])
    if set_digest is None and finished:
        set_digest = str(finished[-1]["set_digest"])
    chosen = [r for r in finished if r["set_digest"] == set_digest]
    by_id = {int(r["id"]): r for r in chosen}
    pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        run = by_id.get(int(row["run_id"]))
        if run is not None:
            pooled[_day(run["finished_at"]), str(row["variant"])].append(float(row["score"]))
    variants = list(dict.fromkeys(v for r in chosen for v in r["variants"]))
    points: list[dict[str, Any]] = []
    for (day, variant), scores in sorted(pooled.items()):
        day_runs = [r for r in chosen if _day(r["finished_at"]) == day and variant in r["variants"]]
        n, mean = len(scores), sum(scores) / len(scores)
        interval = wilson_interval(min(max(mean, 0.0), 1.0) * n, n)
        points.append(
            {
                "day": day,
                "variant": variant,
                "runs": [int(r["id"]) for r in day_runs],
                "n": n,
                "score": mean,
                "ci95": None if interval is None else list(interval),
                "document_versions": sorted({int(r["document_version"]) for r in day_runs}),
            }
        )
    days = sorted({p["day"] for p in points})
    return {
        "set": None if not chosen else {"name": chosen[-1]["set_name"], "digest": set_digest},
        "variants": variants,
        "days": days,
        "points": points,
        "markers": _markers(chosen, audit, days[0]) if days else [],
        "other_set_runs": len(finished) - len(chosen),
    }


def flag_trend(
    store: Any,
    environment: str,
    flag_key: str,
    *,
    days: int = DEFAULT_DAYS,
    set_digest: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """:func:`trend` of the flag's runs finished in the last ``days`` days (from midnight UTC of
    the first), read from ``store`` (a :class:`~vibesdk_server._storage.SqlStore`)."""
    from vibesdk_server._storage import rfc3339

    today = (now or dt.datetime.now(dt.timezone.utc)).date()
    first = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), dt.timezone.utc)
    runs, rows, audit = store.eval_trend_input(environment, flag_key, since=rfc3339(first))
    return {
        "environment": environment,
        "flag": flag_key,
        "since": first.date().isoformat(),
        **trend(runs, rows, audit, set_digest=set_digest),
    }
