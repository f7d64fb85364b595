"""Measurements' rollups and retention, on SQLite and PostgreSQL.

The 1 min and 10 min rollups written beside the 10 s rows must give the charts the same figures
as the 10 s rows (sums, merged histograms, their quantiles), whatever the order and the batches
the points came in; old rows are dropped by age, the rollups later than the 10 s rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from vibesdk_server._domain._otlp import Point
from vibesdk_server._storage import SqlStore, open_store
from vibesdk_server._storage._measurements import (
    ROLLUPS,
    MeasurementRetention,
    _empty,
    quantile,
)
from vibesdk_server.testing import FlagServerProcess

FLAG = "vibethinker"
DURATION = "gen_ai.client.operation.duration"
BOUNDS = (0.1, 0.5, 1.0, 3.0, 10.0)
TOKEN_BOUNDS = (16.0, 64.0, 256.0)
#: A start that is a whole number of 10 minutes, so every step below holds whole intervals.
T0 = 1_800_000_000 // 600 * 600


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    opened.create_environment("prod", actor="t", reason=None)
    yield opened
    opened.close()


def _points(rng: random.Random, t: int, variant: str) -> list[Point]:
    """One 10 s interval of one variant: the duration histogram (ok, fallen back, raised),
    fallbacks, a check's failures, input and output tokens (with their histogram)."""
    out = []
    for labels in ("vibesdk.fallback=false", "vibesdk.fallback=true", "error.type=timeout"):
        buckets = [rng.randrange(0, 6) for _ in range(len(BOUNDS) + 1)]
        n = sum(buckets)
        out.append(Point(FLAG, variant, t, DURATION, labels, n, n * 0.7, BOUNDS, tuple(buckets)))
    out += [
        Point(FLAG, variant, t, "vibesdk.fallbacks", "vibesdk.fallback.reason=error", 1, 2),
        Point(FLAG, variant, t, "vibesdk.quality.failures", "vibesdk.quality.check=rep", 1, 1),
        Point(FLAG, variant, t, "vibesdk.feedback.score", "", 3, 12),
        Point(FLAG, variant, t, "vibesdk.reports", "", 1, rng.randrange(0, 2)),
    ]
    for kind in ("input", "output"):
        tokens = [rng.randrange(0, 4) for _ in range(len(TOKEN_BOUNDS) + 1)]
        n = sum(tokens)
        out.append(
            Point(
                FLAG,
                variant,
                t,
                "gen_ai.client.token.usage",
                f"gen_ai.token.type={kind}",
                n,
                n * 100,
                TOKEN_BOUNDS,
                tuple(tokens),
            )
        )
    return out


def _seed(store: SqlStore, *, intervals: int, seed: int = 3) -> None:
    """``intervals`` 10 s intervals from T0, two variants, each interval's points split over
    two writes (two SDK replicas), the writes shuffled and sent in batches of varied size."""
    rng = random.Random(seed)
    writes = []
    for i in range(intervals):
        for variant in ("stable", "canary"):
            points = _points(rng, T0 + i * 10, variant)
            cut = rng.randrange(len(points) + 1)
            writes += [points[:cut], points[cut:]]
    rng.shuffle(writes)
    while writes:
        size = rng.randrange(1, 40)
        store.add_points("prod", [p for w in writes[:size] for p in w])
        writes = writes[size:]


def _merge(into: dict[str, Any], point: dict[str, Any]) -> None:
    """Add one raw (10 s) point's figures into a coarser step's, as the test's own reference."""
    for name in ("calls", "slow_calls", "latency_sum_s", "reports", "failed_attempts"):
        into[name] += point[name]
    for name in ("errors", "fallbacks", "quality_failures"):
        for k, n in point[name].items():
            into[name][k] = into[name].get(k, 0) + n
    for name in ("count", "sum"):
        into["output_tokens"][name] += point["output_tokens"][name]
        into["feedback"][name] += point["feedback"][name]
        into["review"][name] += point["review"][name]
    for hist, more in (
        (into["duration_histogram"], point["duration_histogram"]),
        (into["output_tokens"]["histogram"], point["output_tokens"]["histogram"]),
    ):
        if more["counts"]:
            hist["bounds"] = more["bounds"]
            counts = hist["counts"] or [0] * len(more["counts"])
            hist["counts"] = [a + b for a, b in zip(counts, more["counts"], strict=True)]


def _regroup(raw: dict[str, list[dict[str, Any]]], step: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for variant, points in raw.items():
        steps: dict[int, dict[str, Any]] = {}
        for p in points:
            t = p["t"] // step * step
            if t not in steps:
                steps[t] = {**_empty(), "review": {"count": 0, "sum": 0.0}, "t": t}
                del steps[t]["first_interval"], steps[t]["last_interval"]
                del steps[t]["users_by_client"]  # not a series figure
            _merge(steps[t], p)
        out[variant] = [steps[t] for t in sorted(steps)]
    return out


def _figures(series: dict[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    """What the charts draw from each point, floats rounded against summing-order noise."""
    return {
        variant: [
            {
                **{k: v for k, v in p.items() if k != "latency_sum_s"},
                "latency_sum_s": round(p["latency_sum_s"], 6),
                "p50": quantile(p["duration_histogram"], 0.5),
                "p95": quantile(p["duration_histogram"], 0.95),
            }
            for p in points
        ]
        for variant, points in series.items()
    }


def test_rollups_give_the_charts_the_figures_of_the_10s_rows(store: SqlStore) -> None:
    """Every step a whole number of 1 min or 10 min: the series read from the rollups equals
    the 10 s rows' series added up per step (sums, histograms, P50/P95), and over the whole
    window the guard's own read of the 10 s rows."""
    intervals = 6 * 60 * 2 + 7  # two hours and a bit, in 10 s intervals
    _seed(store, intervals=intervals)
    since = T0 - 3600
    raw = store.measurement_series(environment="prod", flag_key=FLAG, since=since, step_s=10)
    assert sum(len(points) for points in raw.values()) == 2 * intervals
    for step in (60, 120, 600, 1200, 1800):
        rolled = store.measurement_series(
            environment="prod", flag_key=FLAG, since=since, step_s=step
        )
        assert _figures(rolled) == _figures(_regroup(raw, step)), step
    whole = store.measurements(environment="prod", flag_key=FLAG, since=since)
    for variant, points in _regroup(raw, 10**9).items():
        (one,) = points
        guard = whole[variant]
        for name in ("calls", "slow_calls", "errors", "fallbacks", "quality_failures"):
            assert one[name] == guard[name], name
        assert one["duration_histogram"] == guard["duration_histogram"]


def test_each_step_starts_at_a_whole_step_and_holds_all_of_it(store: SqlStore) -> None:
    """A window starting mid-step begins with the whole step: its first point is not cut short
    (so a rollup read and a 10 s read agree there too)."""
    _seed(store, intervals=120)
    since = T0 + 125  # inside the third minute, inside the first 10 minutes
    for step in (60, 600):
        rolled = store.measurement_series(
            environment="prod", flag_key=FLAG, since=since, step_s=step
        )
        raw = store.measurement_series(environment="prod", flag_key=FLAG, since=since, step_s=10)
        assert rolled["canary"][0]["t"] == since // step * step
        # The raw read starts at since's own 10 s interval: what lies before it is missing
        # from it but not from the whole step.
        full = store.measurement_series(
            environment="prod", flag_key=FLAG, since=since // step * step, step_s=10
        )
        assert _figures(rolled) == _figures(_regroup(full, step))
        assert raw["canary"][0]["t"] == since // 10 * 10


def test_a_database_from_before_the_rollups_gets_them_from_its_10s_rows(
    db_url: str, store: SqlStore
) -> None:
    """Opening a database whose rollups are missing fills them from the 10 s rows, once."""
    _seed(store, intervals=90)
    before = store.measurement_series(environment="prod", flag_key=FLAG, since=T0, step_s=600)
    with store._tx(write=True) as tx:
        tx.run("DELETE FROM measurement_rollups")
    assert store.measurement_series(environment="prod", flag_key=FLAG, since=T0, step_s=600) == {}
    reopened = open_store(db_url)
    try:
        after = reopened.measurement_series(environment="prod", flag_key=FLAG, since=T0, step_s=600)
        again = open_store(db_url)  # a second start adds nothing twice
        again.close()
        assert (
            reopened.measurement_series(environment="prod", flag_key=FLAG, since=T0, step_s=600)
            == after
        )
    finally:
        reopened.close()
    assert _figures(after) == _figures(before)


def test_prune_drops_10s_rows_then_rollups_by_age(store: SqlStore) -> None:
    """Rows whose interval began before the retention's age go; rollups outlive 10 s rows."""
    _seed(store, intervals=6 * 30)  # 30 minutes
    retention = MeasurementRetention(raw_s=900, rollups_s=1500)
    now = T0 + 1800
    raw_dropped, rollups_dropped = store.prune_measurements(retention, now=now)
    assert raw_dropped > 0
    assert rollups_dropped > 0
    raw = store.measurement_series(environment="prod", flag_key=FLAG, since=0, step_s=10)
    assert min(p["t"] for p in raw["canary"]) == now - 900
    minutes = store.measurement_series(environment="prod", flag_key=FLAG, since=0, step_s=60)
    assert min(p["t"] for p in minutes["canary"]) == now - 1500
    tens = store.measurement_series(environment="prod", flag_key=FLAG, since=0, step_s=600)
    assert min(p["t"] for p in tens["canary"]) == T0 + 600  # T0's began 1800 s before now
    assert store.prune_measurements(retention, now=now) == (0, 0)
    with pytest.raises(ValueError, match="at least as long"):
        MeasurementRetention(raw_s=2, rollups_s=1)


def test_the_server_prunes_measurements_periodically(
    db_url: str, flag_server_factory: Callable[..., FlagServerProcess]
) -> None:
    """vibe-server --measurement-days/--measurement-rollup-days/--measurement-prune-s: rows
    written while it runs are dropped once past their age, the rollups later."""
    # 0.01 days = 864 s; 0.03 days = 2592 s.
    server = flag_server_factory(
        db_url,
        environment="prod",
        extra_args=[
            "--measurement-days",
            "0.01",
            "--measurement-rollup-days",
            "0.03",
            "--measurement-prune-s",
            "0.2",
        ],
    )
    store = open_store(db_url)
    try:
        now = int(time.time()) // 600 * 600
        old = [p for t in (now - 3600, now - 1200, now) for p in _points(random.Random(t), t, "c")]
        store.add_points("prod", old)  # after the server's first prune at start

        def starts(step: int) -> set[int]:
            series = store.measurement_series(
                environment="prod", flag_key=FLAG, since=0, step_s=step
            )
            return {p["t"] for p in series.get("c", [])}

        deadline = time.monotonic() + 30
        while starts(10) != {now} or starts(600) != {now - 1200, now}:
            assert time.monotonic() < deadline, (starts(10), starts(600), server.log_tail())
            time.sleep(0.2)
        assert starts(60) == {now - 1200, now}
    finally:
        store.close()


def test_server_cli_refuses_rollups_kept_shorter_than_the_10s_rows(
    flag_server_factory: Callable[..., FlagServerProcess],
) -> None:
    """--measurement-rollup-days below --measurement-days stops the server with one line."""
    args = ["--measurement-days", "10", "--measurement-rollup-days", "5"]
    with pytest.raises(RuntimeError, match=r"--measurement-rollup-days \(5\) must be at least"):
        flag_server_factory(None, extra_args=args)


def test_rollups_are_the_resolutions_the_dashboard_steps_on() -> None:
    """The dashboard's default steps are whole numbers of a rollup from a minute on."""
    from vibesdk_server._ui._routes import default_step

    for seconds in (3600, 6 * 3600, 86_400, 7 * 86_400):
        for width in (320, 900, 1200, 10_000):
            step = default_step(seconds, width)
            assert seconds / step <= width
            assert step % 10 == 0
            if step >= 60:
                assert any(step % r == 0 for r in ROLLUPS), step
