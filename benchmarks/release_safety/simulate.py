"""Release safety: does the guard's confidence sequence allow peeking, how fast does it catch harm?

Simulates many canary releases with numpy, checking after every interval the way the guard loop
does, with the same statistics as ``vibesdk_server._guard.stats`` (the vectorised bound here is
pinned to that module by server/tests/test_guard_simulation.py):

* **A/A** -- canary and stable identical (2% errors, 10%/90% split, ~100 calls per 10 s
  interval, checked every interval for 30 minutes): the share of releases the relative error-rate
  guardrail would roll back (a *false rollback*; must be <= alpha = 0.05), next to a naive
  one-sided fixed-n z-test (pooled, 1.645) peeked at the same moments, and that z-test looked at
  only once, at the end (its honest use, for reference). A second A/A case checks the absolute
  guardrail ("at most 5% of canary calls over 3 s") with the canary sitting exactly at 5%.
* **Power** -- the canary's error rate raised from 2% to 2.5% ... 10%, at 100 calls/s with 10%
  to the canary, checked every 2 s: how many calls (and minutes) until the guardrail rolls the
  release back.

Run from the repository root (a few seconds on a 2-core machine)::

    .venv/bin/python benchmarks/release_safety/simulate.py \\
        --out benchmarks/release_safety/results/DATE-MACHINE.jsonl
    .venv/bin/python benchmarks/release_safety/simulate.py --quick   # a few hundred releases

With ``--out`` it writes JSON lines (a header with the machine, date, commit and Python, then
one line per scenario and the summary) and, where matplotlib is importable, a PNG chart next to
it; the chart's data are always in the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vibesdk_server._guard.stats import (  # noqa: E402
    DEFAULT_ALPHA,
    DEFAULT_PLANNED_SAMPLES,
    one_sided_alpha,
    step_planned_samples,
    tuned_rho,
)

Array = NDArray[np.float64]
NAIVE_Z = 1.6448536269514722  # one-sided 5% normal quantile


def _margin(t: Array, rho: float, level: float) -> Array:
    """``stats.mixture_margin`` for arrays of sample sizes."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = t * rho * rho
        m = np.sqrt(2.0 * (x + 1.0) / (t * t * rho * rho) * np.log(np.sqrt(x + 1.0) / level))
    return np.where(t > 0, m, np.inf)


def difference_lower(
    e_c: Array,
    n_c: Array,
    e_s: Array,
    n_s: Array,
    *,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float = DEFAULT_PLANNED_SAMPLES,
) -> Array:
    """Lower CS bound of ``rate_c - rate_s`` (``stats.difference_bound`` for arrays of counts)."""
    rho = tuned_rho(planned_samples, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_c, p_s = e_c / n_c, e_s / n_s
        var = p_c * (1 - p_c) / n_c + p_s * (1 - p_s) / n_s
        total = n_c + n_s
        lower = (p_c - p_s) - np.sqrt(var * total) * _margin(total, rho, one_sided_alpha(alpha))
    return np.where((n_c > 0) & (n_s > 0), lower, -np.inf)


def proportion_lower(
    e: Array,
    n: Array,
    *,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float = DEFAULT_PLANNED_SAMPLES,
) -> Array:
    """Lower CS bound of one rate (``stats.canary_bound`` for arrays of counts)."""
    rho = tuned_rho(planned_samples, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = e / n
        lower = p - np.sqrt(p * (1 - p)) * _margin(n, rho, one_sided_alpha(alpha))
    return np.where(n > 0, lower, -np.inf)


def naive_z(e_c: Array, n_c: Array, e_s: Array, n_s: Array) -> Array:
    """The pooled two-proportion z statistic (canary minus stable), 0 where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (e_c + e_s) / (n_c + n_s)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_s))
        z = (e_c / n_c - e_s / n_s) / se
    return np.where(np.isfinite(z), z, 0.0)


@dataclass(frozen=True)
class Arms:
    """Cumulative counts after each interval, one row per simulated release."""

    n_c: Array
    e_c: Array
    n_s: Array
    e_s: Array


def simulate_arms(
    rng: np.random.Generator,
    *,
    releases: int,
    intervals: int,
    calls_per_interval: int,
    canary_share: float,
    p_canary: float,
    p_stable: float,
) -> Arms:
    """Each call goes to the canary with ``canary_share``; each fails with its arm's rate."""
    shape = (releases, intervals)
    n_c = rng.binomial(calls_per_interval, canary_share, size=shape)
    n_s = calls_per_interval - n_c
    e_c = rng.binomial(n_c, p_canary)
    e_s = rng.binomial(n_s, p_stable)
    cum = [np.cumsum(a, axis=1).astype(np.float64) for a in (n_c, e_c, n_s, e_s)]
    return Arms(n_c=cum[0], e_c=cum[1], n_s=cum[2], e_s=cum[3])


def relative_breach(
    arms: Arms, *, min_samples_per_arm: int, alpha: float, planned_samples: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Where each arm has its minimum calls, and where the error-rate guardrail is breached there.

    The relative guardrail ``Guardrail(kind="relative", threshold=0.0)`` as ``decide`` judges it.
    """
    gate = np.minimum(arms.n_c, arms.n_s) >= min_samples_per_arm
    lower = difference_lower(
        arms.e_c, arms.n_c, arms.e_s, arms.n_s, alpha=alpha, planned_samples=planned_samples
    )
    return gate, gate & (lower > 0)


def _first(hit: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Index of the first True per row, -1 where none."""
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), first, -1)


def run_aa(
    *,
    releases: int,
    seed: int,
    intervals: int = 180,
    calls_per_interval: int = 100,
    canary_share: float = 0.1,
    p: float = 0.02,
    min_samples_per_arm: int = 100,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float | None = None,
) -> dict[str, Any]:
    """A/A: the share of releases each method would have rolled back at some peek.

    ``planned_samples=None`` is the guard's choice (:func:`step_planned_samples`)."""
    if planned_samples is None:
        planned_samples = step_planned_samples(min_samples_per_arm, canary_share, relative=True)
    rng = np.random.default_rng(seed)
    arms = simulate_arms(
        rng,
        releases=releases,
        intervals=intervals,
        calls_per_interval=calls_per_interval,
        canary_share=canary_share,
        p_canary=p,
        p_stable=p,
    )
    gate, cs_hit = relative_breach(
        arms, min_samples_per_arm=min_samples_per_arm, alpha=alpha, planned_samples=planned_samples
    )
    z = naive_z(arms.e_c, arms.n_c, arms.e_s, arms.n_s)
    z_hit = gate & (z > NAIVE_Z)
    # The naive rate by the number of peeks so far, for the chart.
    z_by_peek = np.cumsum(z_hit, axis=1) > 0
    cs_by_peek = np.cumsum(cs_hit, axis=1) > 0
    return {
        "scenario": "aa_relative",
        "releases": releases,
        "intervals": intervals,
        "interval_s": 10,
        "calls_per_interval": calls_per_interval,
        "canary_share": canary_share,
        "error_rate": p,
        "min_samples_per_arm": min_samples_per_arm,
        "alpha": alpha,
        "planned_samples": planned_samples,
        "cs_false_rollback_rate": float(cs_hit.any(axis=1).mean()),
        "naive_peeking_false_rollback_rate": float(z_hit.any(axis=1).mean()),
        "naive_once_at_end_rate": float((z[:, -1] > NAIVE_Z).mean()),
        "cs_false_rollback_by_minute": cs_by_peek.mean(axis=0)[5::6].round(5).tolist(),
        "naive_false_rollback_by_minute": z_by_peek.mean(axis=0)[5::6].round(5).tolist(),
    }


def run_aa_absolute(
    *,
    releases: int,
    seed: int,
    intervals: int = 180,
    canary_calls_per_interval: int = 10,
    p: float = 0.05,
    min_samples: int = 100,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float | None = None,
) -> dict[str, Any]:
    """The absolute guardrail with the canary exactly at its limit: false breaches <= alpha."""
    if planned_samples is None:
        planned_samples = float(min_samples)
    rng = np.random.default_rng(seed)
    n = np.cumsum(np.full((releases, intervals), canary_calls_per_interval), axis=1)
    e = np.cumsum(rng.binomial(canary_calls_per_interval, p, size=(releases, intervals)), axis=1)
    n_f, e_f = n.astype(np.float64), e.astype(np.float64)
    lower = proportion_lower(e_f, n_f, alpha=alpha, planned_samples=planned_samples)
    hit = (n_f >= min_samples) & (lower > p)
    return {
        "scenario": "aa_absolute",
        "releases": releases,
        "intervals": intervals,
        "interval_s": 10,
        "canary_calls_per_interval": canary_calls_per_interval,
        "slow_share": p,
        "threshold": p,
        "min_samples": min_samples,
        "alpha": alpha,
        "planned_samples": planned_samples,
        "cs_false_breach_rate": float(hit.any(axis=1).mean()),
    }


def run_power(
    *,
    releases: int,
    seed: int,
    p_canary: float,
    p_stable: float = 0.02,
    calls_per_s: float = 100.0,
    interval_s: float = 2.0,
    canary_share: float = 0.1,
    horizon_min: float = 30.0,
    min_samples_per_arm: int = 100,
    alpha: float = DEFAULT_ALPHA,
    planned_samples: float | None = None,
) -> dict[str, Any]:
    """Calls and minutes until the relative guardrail proves ``p_canary > p_stable``."""
    if planned_samples is None:
        planned_samples = step_planned_samples(min_samples_per_arm, canary_share, relative=True)
    rng = np.random.default_rng(seed)
    calls_per_interval = round(calls_per_s * interval_s)
    intervals = round(horizon_min * 60 / interval_s)
    arms = simulate_arms(
        rng,
        releases=releases,
        intervals=intervals,
        calls_per_interval=calls_per_interval,
        canary_share=canary_share,
        p_canary=p_canary,
        p_stable=p_stable,
    )
    _, hit = relative_breach(
        arms, min_samples_per_arm=min_samples_per_arm, alpha=alpha, planned_samples=planned_samples
    )
    first = _first(hit)
    caught = first >= 0
    rows = np.arange(releases)
    canary_calls = np.where(caught, arms.n_c[rows, first], np.nan)
    minutes = np.where(caught, (first + 1) * interval_s / 60.0, np.nan)

    def q(a: Array, pct: float) -> float | None:
        # Quantiles over all releases: one never caught counts as "later than the horizon".
        filled = np.where(np.isnan(a), np.inf, a)
        v = float(np.quantile(filled, pct / 100, method="higher"))
        return None if math.isinf(v) else v

    return {
        "scenario": "power",
        "releases": releases,
        "p_stable": p_stable,
        "p_canary": p_canary,
        "calls_per_s": calls_per_s,
        "interval_s": interval_s,
        "canary_share": canary_share,
        "horizon_min": horizon_min,
        "min_samples_per_arm": min_samples_per_arm,
        "planned_samples": planned_samples,
        "caught_share": float(caught.mean()),
        "canary_calls_median": q(canary_calls, 50),
        "canary_calls_p90": q(canary_calls, 90),
        "total_calls_median": q(np.where(caught, (first + 1) * calls_per_interval, np.nan), 50),
        "minutes_median": q(minutes, 50),
        "minutes_p90": q(minutes, 90),
        "fixed_n_canary_calls_80pct": fixed_n_canary_calls(p_stable, p_canary, canary_share),
    }


def fixed_n_canary_calls(
    p_stable: float, p_canary: float, canary_share: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Canary calls a one-look, one-sided z-test needs for 80% power (for comparison)."""
    z_a, z_b = NAIVE_Z, 0.8416212335729143
    k = canary_share / (1 - canary_share)  # stable calls = canary calls / k
    var = p_canary * (1 - p_canary) + p_stable * (1 - p_stable) * k
    return math.ceil((z_a + z_b) ** 2 * var / (p_canary - p_stable) ** 2)


POWER_EFFECTS = (0.025, 0.03, 0.035, 0.04, 0.05, 0.06, 0.08, 0.10)


def run_all(*, quick: bool, seed: int) -> list[dict[str, Any]]:
    """The main A/A case first, the absolute A/A second, then more A/A cases and the power curve."""
    releases = 400 if quick else 10_000
    power_releases = 200 if quick else 2_000
    out = [
        run_aa(releases=releases, seed=seed),
        run_aa_absolute(releases=releases, seed=seed + 1),
    ]
    if not quick:
        # Rarer and commoner errors (the asymptotics are weakest for rare events), and a
        # four-hour step, where naive peeking keeps getting worse and the CS does not.
        out += [
            run_aa(releases=releases, seed=seed + 2, p=0.005),
            run_aa(releases=releases, seed=seed + 3, p=0.10),
            run_aa(releases=2_000, seed=seed + 4, intervals=1_440),
            # The end-to-end benchmark's gate: 50 calls per arm (the sequence tuned to 500).
            run_aa(releases=releases, seed=seed + 5, min_samples_per_arm=50),
            run_aa(releases=releases, seed=seed + 6, p=0.005, min_samples_per_arm=50),
            run_aa_absolute(releases=releases, seed=seed + 7, min_samples=50),
        ]
    effects = (0.03, 0.06) if quick else POWER_EFFECTS
    for i, p1 in enumerate(effects):
        out.append(run_power(releases=power_releases, seed=seed + 10 + i, p_canary=p1))
    return out


def _chart(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    aa = next(r for r in rows if r["scenario"] == "aa_relative")
    power = [r for r in rows if r["scenario"] == "power"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4))
    by_minute = np.arange(1, len(aa["cs_false_rollback_by_minute"]) + 1)
    left.plot(
        by_minute, aa["naive_false_rollback_by_minute"], label="naive z-test, peeked every 10 s"
    )
    left.plot(by_minute, aa["cs_false_rollback_by_minute"], label="confidence sequence (guard)")
    left.axhline(aa["alpha"], color="grey", linestyle="--", label="alpha = 0.05")
    left.set_xlabel("minutes into the release")
    left.set_ylabel("A/A releases rolled back so far")
    left.set_title(f"A/A, {aa['error_rate']:.0%} errors, {aa['releases']:,} releases")
    left.legend()
    x = [100 * r["p_canary"] for r in power]
    right.plot(x, [r["canary_calls_median"] for r in power], marker="o", label="median")
    right.plot(x, [r["canary_calls_p90"] for r in power], marker="o", label="90th percentile")
    right.plot(
        x,
        [r["fixed_n_canary_calls_80pct"] for r in power],
        linestyle=":",
        label="fixed-n z-test, 80% power (one look)",
    )
    right.set_yscale("log")
    right.set_xlabel("canary error rate, % (stable 2%)")
    right.set_ylabel("canary calls until rollback")
    rate = power[0]["calls_per_s"] * power[0]["canary_share"]
    minutes = right.secondary_yaxis(
        "right", functions=(lambda c: c / rate / 60, lambda m: m * rate * 60)
    )
    minutes.set_ylabel(f"minutes at {power[0]['calls_per_s']:g} calls/s, 10% canary")
    right.set_title("Catching a worse canary (checked every 2 s)")
    right.grid(True, which="both", alpha=0.3)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred releases per case")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--out", help="write JSON lines here (and a PNG chart next to it)")
    args = parser.parse_args()

    from _common import now_utc, result_header

    started, load = now_utc(), _loadavg()
    t0 = time.perf_counter()
    rows = run_all(quick=args.quick, seed=args.seed)
    elapsed = time.perf_counter() - t0
    aa = rows[0]
    aa_rows = [r for r in rows if r["scenario"] == "aa_relative"]
    absolute_rows = [r for r in rows if r["scenario"] == "aa_absolute"]
    summary = {
        "summary": True,
        "seconds": round(elapsed, 1),
        "alpha": DEFAULT_ALPHA,
        "aa_cs_false_rollback_rate": aa["cs_false_rollback_rate"],
        "aa_naive_peeking_false_rollback_rate": aa["naive_peeking_false_rollback_rate"],
        "aa_naive_once_at_end_rate": aa["naive_once_at_end_rate"],
        "aa_absolute_false_breach_rate": rows[1]["cs_false_breach_rate"],
        "aa_cases": [
            {
                "error_rate": r["error_rate"],
                "min_samples_per_arm": r["min_samples_per_arm"],
                "minutes": r["intervals"] * r["interval_s"] / 60,
                "releases": r["releases"],
                "cs": r["cs_false_rollback_rate"],
                "naive_peeking": r["naive_peeking_false_rollback_rate"],
            }
            for r in aa_rows
        ],
        "aa_absolute_cases": [
            {"min_samples": r["min_samples"], "cs": r["cs_false_breach_rate"]}
            for r in absolute_rows
        ],
        "cs_within_alpha": all(r["cs_false_rollback_rate"] <= DEFAULT_ALPHA for r in aa_rows)
        and all(r["cs_false_breach_rate"] <= DEFAULT_ALPHA for r in absolute_rows),
        "power_2_to_6": next(
            {
                k: r[k]
                for k in (
                    "canary_calls_median",
                    "canary_calls_p90",
                    "minutes_median",
                    "minutes_p90",
                )
            }
            for r in rows
            if r.get("p_canary") == 0.06
        ),
    }
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("by_minute")}))
    print(json.dumps(summary))
    if args.out:
        header = result_header(
            "release_safety",
            started=started,
            load_before=load,
            distributions=["numpy", "matplotlib"],
            parameters={"quick": args.quick, "seed": args.seed},
        )
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for line in [header, *rows, summary]:
                f.write(json.dumps(line) + "\n")
        print(f"wrote {path}", file=sys.stderr)
        png = path.with_suffix(".png")
        if _chart(rows, png):
            print(f"wrote {png}", file=sys.stderr)
        else:
            print("matplotlib is not installed: no chart (its data are in the JSON lines)")
    return 0 if summary["cs_within_alpha"] else 1


def _loadavg() -> tuple[float, float, float]:
    import os

    return os.getloadavg()


if __name__ == "__main__":
    raise SystemExit(main())
