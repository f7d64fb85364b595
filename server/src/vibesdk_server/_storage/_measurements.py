"""Measurements received over OTLP, kept per (environment, flag, variant, 10 s interval).

Append-only: each received data point is one row (several replicas may write
the same interval at once); reading sums them. What a variant's rows add up to
is :meth:`MeasurementStore.measurements`: the figures canary analysis compares.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable
from typing import Any

from vibesdk_server._domain._otlp import Point

from ._base import StoreBase, Tx, rfc3339, utcnow

__all__ = ["SLOW_S", "MeasurementStore", "quantile"]

#: The latency guardrail's threshold: calls slower than this count as slow (the SDK's duration
#: histogram has a bucket boundary here).
SLOW_S = 3.0


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
        with self._tx(write=True) as tx:
            for row in rows:
                tx.run(
                    "INSERT INTO measurements (environment, flag_key, variant, interval_start,"
                    " metric, labels, count, total, bounds, buckets, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        return len(rows)

    def measurements(
        self, *, environment: str, flag_key: str, since: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per variant: what the SDKs measured for ``flag_key`` from ``since`` (unix seconds) on.

        Each variant's figures: ``calls`` (and ``slow_calls``, over :data:`SLOW_S`;
        ``latency_sum_s``), ``errors`` (calls that raised, by ``error.type``),
        ``fallbacks`` (by reason), ``quality_failures`` (by check), ``output_tokens``
        (count, sum and their ``histogram``), ``failed_attempts`` (calls with a failed attempt
        on their variant: retried, fell back or raised), ``feedback`` (count, sum of scores) and
        ``reports`` as the SDKs exported them,
        ``feedback_received`` (users' scores -- count, sum, sum of squares -- and reports
        received in the feedback and reports tables since ``since``), the ``duration_histogram``
        (bounds, counts) and the first and last interval seen.
        Calls are counted for the variant a user was **assigned**, as the SDK records them.
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
        out: dict[str, dict[str, Any]] = {}
        for variant, metric, labels, count, total, first, last in sums:
            v = out.setdefault(variant, _empty())
            v["first_interval"] = (
                first if v["first_interval"] is None else min(first, v["first_interval"])
            )
            v["last_interval"] = (
                last if v["last_interval"] is None else max(last, v["last_interval"])
            )
            _add(v, metric, _labels(labels), float(count), float(total))
        for variant, metric, labels, bounds_text, buckets_text in histograms:
            v = out.setdefault(variant, _empty())
            if metric == "gen_ai.client.operation.duration":
                _merge_histogram(v["duration_histogram"], bounds_text, buckets_text)
            elif _labels(labels).get("gen_ai.token.type") == "output":
                _merge_histogram(v["output_tokens"]["histogram"], bounds_text, buckets_text)
        for variant, figures in received.items():
            out.setdefault(variant, _empty())["feedback_received"] = figures
        for v in out.values():
            v["slow_calls"] = _over(v["duration_histogram"], SLOW_S)
        return out

    def measurement_series(
        self, *, environment: str, flag_key: str, since: int, step_s: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Per variant, oldest first: the figures of :meth:`measurements` per ``step_s`` seconds.

        Each point is one step (its start, unix seconds, as ``t``) with at least one
        measurement; steps are whole multiples of ``step_s``. Histogram quantiles are
        :func:`quantile` estimates.
        """
        step_s = max(int(step_s), 1)
        params = (step_s, step_s, environment, flag_key, since)
        sql = (
            "SELECT variant, (interval_start / ?) * ? AS t, metric, labels, SUM(count), SUM(total)"
            " FROM measurements WHERE environment = ? AND flag_key = ? AND interval_start >= ?"
            " GROUP BY variant, t, metric, labels"
        )
        hist_sql = (
            "SELECT variant, (interval_start / ?) * ? AS t, bounds, buckets FROM measurements"
            " WHERE environment = ? AND flag_key = ? AND interval_start >= ?"
            " AND metric = 'gen_ai.client.operation.duration' AND buckets IS NOT NULL"
        )
        with self._tx() as tx:
            sums = tx.all(sql, params)
            histograms = tx.all(hist_sql, params)
        points: dict[tuple[str, int], dict[str, Any]] = {}
        for variant, t, metric, labels, count, total in sums:
            point = points.get((variant, t))
            if point is None:
                point = points[variant, t] = _empty()
            _add(point, metric, _labels(labels), float(count), float(total))
        for variant, t, bounds_text, buckets_text in histograms:
            point = points.get((variant, t))
            if point is None:
                point = points[variant, t] = _empty()
            _merge_histogram(point["duration_histogram"], bounds_text, buckets_text)
        out: dict[str, list[dict[str, Any]]] = {}
        for (variant, t), point in sorted(points.items(), key=lambda item: item[0][1]):
            point["slow_calls"] = _over(point["duration_histogram"], SLOW_S)
            point["t"] = t
            out.setdefault(variant, []).append(point)
        return out


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
    reports tables, received from ``since`` (unix seconds) on."""
    where = " WHERE environment = ? AND flag_key = ? AND variant IS NOT NULL"
    params: list[Any] = [environment, flag_key]
    if since is not None:
        where += " AND at >= ?"
        params.append(rfc3339(dt.datetime.fromtimestamp(since, dt.timezone.utc)))
    out: dict[str, dict[str, Any]] = {}
    empty = {"count": 0, "sum": 0.0, "sum_sq": 0.0, "reports": 0}
    scores = tx.all(
        "SELECT variant, COUNT(*), SUM(score), SUM(score * score) FROM feedback"  # noqa: S608 -- fixed names
        + where
        + " GROUP BY variant",
        params,
    )
    for variant, count, total, total_sq in scores:
        out[variant] = {
            **empty,
            "count": int(count),
            "sum": float(total),
            "sum_sq": float(total_sq),
        }
    reports = tx.all("SELECT variant, COUNT(*) FROM reports" + where + " GROUP BY variant", params)  # noqa: S608 -- fixed names
    for variant, count in reports:
        out.setdefault(variant, dict(empty))["reports"] = int(count)
    return out


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
