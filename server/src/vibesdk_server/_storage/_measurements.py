"""Measurements received over OTLP, kept per (environment, flag, variant, 10 s interval).

Append-only: each received data point is one row (several replicas may write
the same interval at once); reading sums them. What a variant's rows add up to
is :meth:`MeasurementStore.measurements`: the figures canary analysis compares.

Beside the 10 s rows, the same write adds each point into coarser **rollups**
(:data:`ROLLUPS`: 1 minute and 10 minutes), one row per (environment, flag, variant,
resolution, interval, metric, labels, histogram bounds) holding the sums and the merged
histogram. :meth:`MeasurementStore.measurement_series` reads the coarsest resolution that
divides its step (a long window reads a few thousand rows instead of half a million); the
figures are the same as from the 10 s rows, histogram quantiles included, because a step
is a whole number of rollup intervals. The guard's :meth:`~MeasurementStore.measurements`
reads the 10 s rows. :meth:`MeasurementStore.prune_measurements` drops rows older than a
:class:`MeasurementRetention` (the server runs it periodically).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vibesdk_server._domain._otlp import INTERVAL_S, Point

from ._base import StoreBase, Tx, rfc3339, utcnow

__all__ = [
    "DEFAULT_MEASUREMENT_RETENTION",
    "ROLLUPS",
    "SLOW_S",
    "MeasurementRetention",
    "MeasurementStore",
    "quantile",
]

#: The latency guardrail's threshold: calls slower than this count as slow (the SDK's duration
#: histogram has a bucket boundary here).
SLOW_S = 3.0
#: The coarser resolutions (seconds) kept beside the 10 s rows, finest first.
ROLLUPS = (60, 600)
_DURATION = "gen_ai.client.operation.duration"
_EXPOSURES = "vibesdk.exposures"


@dataclass(frozen=True)
class MeasurementRetention:
    """How long measurements are kept, by the start of their interval (seconds).

    ``raw_s``: the 10 s rows (what the guard and the finest charts read); ``rollups_s``: the
    1 min and 10 min rollups (what long chart windows read), kept at least as long.
    """

    raw_s: float = 8 * 86_400.0
    rollups_s: float = 90 * 86_400.0

    def __post_init__(self) -> None:
        if not 0 < self.raw_s <= self.rollups_s:
            raise ValueError(
                f"keep the rollups ({self.rollups_s / 86_400:g} days) at least as long as the"
                f" 10 s measurements ({self.raw_s / 86_400:g} days), both above 0"
            )


DEFAULT_MEASUREMENT_RETENTION = MeasurementRetention()


class MeasurementStore(StoreBase):
    """Store OTLP measurement points; add them up per variant."""

    def add_points(self, environment: str, points: Iterable[Point]) -> int:
        """Store ``points`` for ``environment`` in one transaction; how many."""
        now = utcnow()
        rows = [
            (
                environment,
                p.flag_key,
                p.variant,
                p.interval_start,
                p.metric,
                p.labels,
                p.count,
                p.total,
                json.dumps(p.bounds) if p.bounds else None,
                json.dumps(p.buckets) if p.buckets else None,
                now,
            )
            for p in points
        ]
        if not rows:
            return 0
        rollups: _Rollups = {}
        _roll_up(rows, rollups)
        with self._tx(write=True) as tx:
            # Rollup rows are read, added to and written back: one writer per environment
            # (SQLite's BEGIN IMMEDIATE already is; PostgreSQL replicas take this lock).
            self._lock(tx, f"measurements {environment}")
            for row in rows:
                tx.run(
                    "INSERT INTO measurements (environment, flag_key, variant, interval_start,"
                    " metric, labels, count, total, bounds, buckets, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            for key, sums in rollups.items():
                _add_rollup(tx, environment, key, sums)
        return len(rows)

    def init_rollups(self, tx: Tx) -> None:
        """Fill the rollups from the 10 s rows of a database written before they existed."""
        if tx.one("SELECT 1 FROM measurement_rollups LIMIT 1") is not None:
            return
        for (environment,) in tx.all("SELECT DISTINCT environment FROM measurements"):
            self._lock(tx, f"measurements {environment}")
            cursor = tx.run(
                "SELECT environment, flag_key, variant, interval_start, metric, labels, count,"
                " total, bounds, buckets, received_at FROM measurements WHERE environment = ?",
                (environment,),
            )
            rollups: _Rollups = {}
            while chunk := cursor.fetchmany(10_000):
                _roll_up(chunk, rollups)
            for key, sums in rollups.items():
                _add_rollup(tx, environment, key, sums)

    def prune_measurements(
        self, retention: MeasurementRetention, *, now: float | None = None
    ) -> tuple[int, int]:
        """Drop 10 s rows and rollups whose interval began longer ago than ``retention``
        keeps them; how many of each."""
        now = time.time() if now is None else now
        with self._tx(write=True) as tx:
            raw = tx.run(
                "DELETE FROM measurements WHERE interval_start < ?", (int(now - retention.raw_s),)
            ).rowcount
            rolled = tx.run(
                "DELETE FROM measurement_rollups WHERE interval_start < ?",
                (int(now - retention.rollups_s),),
            ).rowcount
        return int(raw), int(rolled)

    def measurements(
        self,
        *,
        environment: str,
        flag_key: str,
        since: int | None = None,
        step: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Per variant: what the SDKs measured for ``flag_key`` from ``since`` (unix seconds) on.

        Each variant's figures: ``calls`` (and ``slow_calls``, over :data:`SLOW_S`;
        ``latency_sum_s``), ``errors`` (calls that raised, by ``error.type``),
        ``fallbacks`` (by reason), ``quality_failures`` (by check), ``output_tokens``
        (count, sum and their ``histogram``), ``failed_attempts`` (calls with a failed attempt
        on their variant: retried, fell back or raised), ``feedback`` (count, sum of scores) and
        ``reports`` as the SDKs exported them, ``users`` (``vibesdk.exposures``: each SDK
        client counts a user the first time it meets them in the flag's current rollout step;
        0 when the SDKs are too old to count them; a user two processes met counts twice,
        in the same variant) and ``users_by_client`` (the same count per SDK client, by its
        ``vibesdk.client.id``; ``""`` for SDKs that send none),
        ``feedback_received`` (users' scores -- count, sum, sum of squares -- and reports
        received in the feedback and reports tables since ``since``), the ``duration_histogram``
        (bounds, counts) and the first and last interval seen.
        Calls are counted for the variant a user was **assigned**, as the SDK records them.

        ``step`` (a flag's :attr:`~vibesdk.Flag.step_id`) counts only the users counted in that
        step (``vibesdk.step``), from the start of the interval holding ``since`` on: a step's
        users are mostly met in its first seconds, which the interval wholly inside the step
        that ``since`` names for the other figures would leave out.
        """
        sql = (
            "SELECT variant, metric, labels, SUM(count), SUM(total), MIN(interval_start),"
            " MAX(interval_start) FROM measurements WHERE environment = ? AND flag_key = ?"
        )
        params: list[Any] = [environment, flag_key]
        if since is not None:
            sql += " AND interval_start >= ?"
            params.append(since)
        hist_sql = (
            "SELECT variant, metric, labels, bounds, buckets FROM measurements"
            " WHERE environment = ? AND flag_key = ? AND buckets IS NOT NULL AND metric IN"
            " ('gen_ai.client.operation.duration', 'gen_ai.client.token.usage')"
        )
        if since is not None:
            hist_sql += " AND interval_start >= ?"
        with self._tx() as tx:
            sums = tx.all(sql + " GROUP BY variant, metric, labels", params)
            histograms = tx.all(hist_sql, params)
            received = _feedback_received(tx, environment, flag_key, since)
            if step is not None:
                exposures = tx.all(
                    "SELECT variant, labels, SUM(total) FROM measurements WHERE environment = ?"
                    " AND flag_key = ? AND metric = ? AND interval_start >= ?"
                    " GROUP BY variant, labels",
                    [environment, flag_key, _EXPOSURES, (since or 0) // INTERVAL_S * INTERVAL_S],
                )
        out: dict[str, dict[str, Any]] = _fold(sums, histograms)
        if step is not None:
            _step_users(out, exposures, step)
        for variant, figures in received.items():
            out.setdefault(variant, _empty())["feedback_received"] = figures
        for v in out.values():
            v["slow_calls"] = _over(v["duration_histogram"], SLOW_S)
        return out

    def measurement_series(
        self, *, environment: str, flag_key: str, since: int, step_s: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Per variant, oldest first: the figures of :meth:`measurements` per ``step_s`` seconds
        (without ``users_by_client``, which only the guard's sample-ratio test reads).

        Each point is one whole step (its start, unix seconds, as ``t``) with at least one
        measurement or review score; steps are whole multiples of ``step_s``, from the one
        holding ``since`` on. Read from the coarsest rollup whose resolution divides ``step_s``
        (else from the 10 s rows): the same figures either way. Histogram quantiles are
        :func:`quantile` estimates. ``review`` (count and sum of reviewers' 1..5 scores) counts
        each score in the step of the answer it scores (when the logged call ended), not in the
        step it was given in, so that it lines up with the rollout that answered.
        """
        step_s = max(int(step_s), 1)
        start = since // step_s * step_s
        resolution = max((r for r in ROLLUPS if step_s % r == 0), default=None)
        if resolution is None:
            table, where, params = "measurements", "", [environment, flag_key, start]
        else:
            table, where = "measurement_rollups", " AND resolution_s = ?"
            params = [environment, flag_key, start, resolution]
        where = "environment = ? AND flag_key = ? AND interval_start >= ?" + where
        sql = (
            "SELECT variant, (interval_start / ?) * ? AS t, metric, labels, SUM(count),"  # noqa: S608 -- fixed names
            f" SUM(total), MIN(interval_start), MAX(interval_start) FROM {table} WHERE {where}"
            " GROUP BY variant, t, metric, labels"
        )
        hist_sql = (
            "SELECT variant, (interval_start / ?) * ? AS t, metric, labels, bounds, buckets"  # noqa: S608 -- fixed names
            f" FROM {table} WHERE {where} AND metric = ? AND buckets IS NOT NULL"
        )
        with self._tx() as tx:
            sums = tx.all(sql, [step_s, step_s, *params])
            histograms = tx.all(hist_sql, [step_s, step_s, *params, _DURATION])
            reviews = _review_series(tx, environment, flag_key, start, step_s)
        points: dict[tuple[str, int], dict[str, Any]] = _fold(
            [((variant, t), *rest) for variant, t, *rest in sums],
            [((variant, t), *rest) for variant, t, *rest in histograms],
        )
        for key, review in reviews.items():
            points.setdefault(key, _empty())["review"] = review
        out: dict[str, list[dict[str, Any]]] = {}
        for (variant, t), point in sorted(points.items(), key=lambda item: item[0][1]):
            point.setdefault("review", {"count": 0, "sum": 0.0})
            point["slow_calls"] = _over(point["duration_histogram"], SLOW_S)
            # A rollup row's interval is its own start, not the 10 s one's: not a figure here.
            del point["first_interval"], point["last_interval"]
            del point["users_by_client"]  # the guard's test reads it; a chart reads "users"
            point["t"] = t
            out.setdefault(variant, []).append(point)
        return out


def _fold(sums: Iterable[Any], histograms: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """Figures per key from grouped sums ``(key, metric, labels, count, total, first, last)``
    and histogram rows ``(key, metric, labels, bounds, buckets)``."""
    out: dict[Any, dict[str, Any]] = {}
    for key, metric, labels, count, total, first, last in sums:
        v = out.get(key)
        if v is None:
            v = out[key] = _empty()
        v["first_interval"] = (
            first if v["first_interval"] is None else min(first, v["first_interval"])
        )
        v["last_interval"] = last if v["last_interval"] is None else max(last, v["last_interval"])
        _add(v, metric, _labels(labels), float(count), float(total))
    for key, metric, labels, bounds_text, buckets_text in histograms:
        v = out.get(key)
        if v is None:
            v = out[key] = _empty()
        if metric == _DURATION:
            _merge_histogram(v["duration_histogram"], bounds_text, buckets_text)
        elif _labels(labels).get("gen_ai.token.type") == "output":
            _merge_histogram(v["output_tokens"]["histogram"], bounds_text, buckets_text)
    return out


_RollupKey = tuple[str, str, int, int, str, str, str]
_Rollups = dict[_RollupKey, tuple[float, float, list[int] | None]]


def _roll_up(rows: Iterable[Sequence[Any]], out: _Rollups) -> None:
    """Add measurement rows (as the table's columns) into ``out``: per rollup key ``(flag,
    variant, resolution, interval, metric, labels, bounds)``, count, total, and the histogram's
    buckets added up (None: no histogram)."""
    for _, flag, variant, start, metric, labels, count, total, bounds, buckets_text, _ in rows:
        buckets = json.loads(buckets_text) if buckets_text else None
        for resolution in ROLLUPS:
            key = (flag, variant, resolution, start // resolution * resolution, metric, labels)
            full = (*key, bounds or "")
            seen = out.get(full)
            if seen is None:
                out[full] = (count, total, buckets)
            else:
                out[full] = (seen[0] + count, seen[1] + total, _sum_buckets(seen[2], buckets))


def _sum_buckets(a: list[int] | None, b: list[int] | None) -> list[int] | None:
    """Two bucket counts of one layout added up; one of another length is left out, as the
    10 s rows' readers leave it out."""
    if a is None or b is None:
        return a if b is None else b
    return [x + y for x, y in zip(a, b, strict=True)] if len(a) == len(b) else a


def _add_rollup(
    tx: Tx, environment: str, key: _RollupKey, sums: tuple[float, float, list[int] | None]
) -> None:
    """Add to one rollup row (made if missing); the caller holds the environment's lock."""
    where = (
        " WHERE environment = ? AND flag_key = ? AND variant = ? AND resolution_s = ?"
        " AND interval_start = ? AND metric = ? AND labels = ? AND bounds = ?"
    )
    count, total, buckets = sums
    params = (environment, *key)
    row = tx.one("SELECT buckets FROM measurement_rollups" + where, params)  # noqa: S608 -- fixed names
    if row is None:
        tx.run(
            "INSERT INTO measurement_rollups (environment, flag_key, variant, resolution_s,"
            " interval_start, metric, labels, bounds, count, total, buckets)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*params, count, total, None if buckets is None else json.dumps(buckets)),
        )
        return
    merged = _sum_buckets(json.loads(row[0]) if row[0] else None, buckets)
    tx.run(
        "UPDATE measurement_rollups SET count = count + ?, total = total + ?, buckets = ?"  # noqa: S608 -- fixed names
        + where,
        (count, total, None if merged is None else json.dumps(merged), *params),
    )


def _empty() -> dict[str, Any]:
    return {
        "calls": 0,
        "slow_calls": 0,
        "latency_sum_s": 0.0,
        "errors": {},
        "fallbacks": {},
        "quality_failures": {},
        "output_tokens": {"count": 0, "sum": 0.0, "histogram": {"bounds": [], "counts": []}},
        "feedback": {"count": 0, "sum": 0.0},
        "reports": 0,
        "users": 0,
        "users_by_client": {},
        "feedback_received": {"count": 0, "sum": 0.0, "sum_sq": 0.0, "reports": 0},
        "failed_attempts": 0,
        "duration_histogram": {"bounds": [], "counts": []},
        "first_interval": None,
        "last_interval": None,
    }


def _feedback_received(
    tx: Tx, environment: str, flag_key: str, since: int | None
) -> dict[str, dict[str, Any]]:
    """Per variant: users' scores (count, sum, sum of squares) and reports from the feedback and
    reports tables, and reviewers' scores (``review``, as users'), received from ``since`` (unix
    seconds) on."""
    where = " WHERE environment = ? AND flag_key = ? AND variant IS NOT NULL"
    params: list[Any] = [environment, flag_key]
    if since is not None:
        where += " AND at >= ?"
        params.append(rfc3339(dt.datetime.fromtimestamp(since, dt.timezone.utc)))
    out: dict[str, dict[str, Any]] = {}
    empty = {"count": 0, "sum": 0.0, "sum_sq": 0.0, "reports": 0}
    for variant, moments in _score_moments(tx, "feedback", where, params).items():
        out[variant] = {**empty, **moments}
    reports = tx.all("SELECT variant, COUNT(*) FROM reports" + where + " GROUP BY variant", params)  # noqa: S608 -- fixed names
    for variant, count in reports:
        out.setdefault(variant, dict(empty))["reports"] = int(count)
    # Reviewers' scores (vibe review), stored since ``since``: the review_score guardrail's.
    for variant, moments in _score_moments(tx, "review_scores", where, params).items():
        out.setdefault(variant, dict(empty))["review"] = moments
    return out


def _review_series(
    tx: Tx, environment: str, flag_key: str, start: int, step_s: int
) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (variant, step start): the count and sum of reviewers' scores of the answers logged
    from ``start`` (unix seconds) on, by the answer's time (a score stored without it: its own)."""
    since = rfc3339(dt.datetime.fromtimestamp(start, dt.timezone.utc))
    rows = tx.all(
        "SELECT variant, COALESCE(answered_at, at), score FROM review_scores"
        " WHERE environment = ? AND flag_key = ? AND COALESCE(answered_at, at) >= ?",
        (environment, flag_key, since),
    )
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for variant, answered, score in rows:
        when = dt.datetime.fromisoformat(answered.replace("Z", "+00:00")).timestamp()
        review = out.setdefault((variant, int(when) // step_s * step_s), {"count": 0, "sum": 0.0})
        review["count"] += 1
        review["sum"] += float(score)
    return out


def _score_moments(tx: Tx, table: str, where: str, params: list[Any]) -> dict[str, dict[str, Any]]:
    """Per variant: the count, sum and sum of squares of ``table``'s scores (a fixed name)."""
    rows = tx.all(
        f"SELECT variant, COUNT(*), SUM(score), SUM(score * score) FROM {table}"  # noqa: S608 -- fixed names
        + where
        + " GROUP BY variant",
        params,
    )
    return {
        variant: {"count": int(count), "sum": float(total), "sum_sq": float(total_sq)}
        for variant, count, total, total_sq in rows
    }


@functools.lru_cache(maxsize=1024)
def _labels(text: str) -> dict[str, str]:
    # Cached: a flag's rows repeat a handful of label sets. Callers only read the result.
    return dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)


@functools.lru_cache(maxsize=64)
def _bounds(text: str | None) -> list[float]:
    return json.loads(text) if text else []


def _bump(counts: dict[str, int], key: str, n: float) -> None:
    counts[key] = counts.get(key, 0) + round(n)


def _add(
    v: dict[str, Any], metric: str, labels: dict[str, str], count: float, total: float
) -> None:
    if metric == "gen_ai.client.operation.duration":
        v["calls"] += round(count)
        v["latency_sum_s"] += total
        if "error.type" in labels:
            _bump(v["errors"], labels["error.type"], count)
        failed = labels.get("vibesdk.fallback") == "true"
        if failed or "error.type" in labels or labels.get("vibesdk.attempt.failed") == "true":
            v["failed_attempts"] += round(count)
    elif metric == "vibesdk.fallbacks":
        _bump(v["fallbacks"], labels.get("vibesdk.fallback.reason", "unknown"), total)
    elif metric == "vibesdk.quality.failures":
        _bump(v["quality_failures"], labels.get("vibesdk.quality.check", "unknown"), total)
    elif metric == "gen_ai.client.token.usage" and labels.get("gen_ai.token.type") == "output":
        v["output_tokens"]["count"] += round(count)
        v["output_tokens"]["sum"] += total
    elif metric == "vibesdk.feedback.score":
        v["feedback"]["count"] += round(count)
        v["feedback"]["sum"] += total
    elif metric == "vibesdk.reports":
        v["reports"] += round(total)
    elif metric == _EXPOSURES:
        _count_users(v, labels, total)


def _step_users(out: dict[str, dict[str, Any]], exposures: Iterable[Any], step: str) -> None:
    """``users`` and ``users_by_client`` of each variant: the exposure rows ``(variant, labels,
    total)`` counted in ``step``, in place of those :func:`_fold` summed."""
    for v in out.values():
        v["users"], v["users_by_client"] = 0, {}
    for variant, labels, total in exposures:
        tags = _labels(labels)
        if tags.get("vibesdk.step") == step:
            _count_users(out.setdefault(variant, _empty()), tags, total)


def _count_users(v: dict[str, Any], labels: dict[str, str], total: float) -> None:
    v["users"] += round(total)
    _bump(v["users_by_client"], labels.get("vibesdk.client.id", ""), total)


def _merge_histogram(hist: dict[str, Any], bounds_text: str | None, buckets_text: str) -> None:
    bounds = _bounds(bounds_text)
    buckets = json.loads(buckets_text)
    if not hist["bounds"] and not hist["counts"]:
        hist["bounds"], hist["counts"] = list(bounds), [0] * len(buckets)
    if hist["bounds"] != bounds or len(hist["counts"]) != len(buckets):
        return  # another bucket layout (another SDK version): left out of the histogram
    hist["counts"] = [a + b for a, b in zip(hist["counts"], buckets, strict=True)]


def _over(hist: dict[str, Any], threshold: float) -> int:
    """Observations in buckets wholly above ``threshold`` (exact when it is a bucket bound)."""
    bounds, counts = hist["bounds"], hist["counts"]
    total = 0
    for i, count in enumerate(counts):
        lower = bounds[i - 1] if i > 0 else float("-inf")
        if lower >= threshold:
            total += count
    return total


def quantile(hist: dict[str, Any], q: float) -> float | None:
    """The ``q`` quantile of a duration histogram, interpolated within its bucket; None if empty.

    Observations in the last, unbounded bucket are placed at its lower bound.
    """
    bounds, counts = hist["bounds"], hist["counts"]
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0.0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = bounds[i - 1] if i > 0 else 0.0
            if i >= len(bounds):
                return float(lower)
            return float(lower + (bounds[i] - lower) * (rank - seen) / count)
        seen += count
    return float(bounds[-1]) if bounds else None
