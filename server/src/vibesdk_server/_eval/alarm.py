"""The regression alarm: did a variant's golden-set score fall below its recent baseline?

Pure functions, no I/O. When a run finishes, :func:`check_run` compares each variant's answers
in that run with the same variant's answers in the previous :data:`BASELINE_RUNS` finished runs
of the same flag on the same golden set (pooled), by a one-sided two-sample z-test of the mean
item score, every answer one sample, with the variance pooled over both samples (what it is if
nothing changed). For 0/1 scores this is exactly the pooled two-proportion z-test. The alarm
rings when ``p < ALPHA`` (0.05): the drop is larger than the noise of that many answers.

Honest about small n: the test leans on the normal approximation, so it stays silent (no
verdict) with fewer than :data:`MIN_ANSWERS` answers in the run or in the baseline. Repeats of
one item, and the same items in several baseline runs, are not independent samples: the test
counts them as if they were, so it is somewhat eager with ``--repeat`` and a long baseline. At
alpha 0.05, about one run in twenty of an unchanged variant rings by chance; each variant is
tested on its own.

:func:`drop_bound` is the same test for a guardrail that tolerates a drop: the one-sided lower
confidence bound on the drop, compared with the guardrail's threshold (0: the alarm itself).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

__all__ = [
    "ALPHA",
    "BASELINE_RUNS",
    "MIN_ANSWERS",
    "check_run",
    "drop_bound",
    "regression",
]

ALPHA = 0.05
"""The alarm's one-sided significance level."""
BASELINE_RUNS = 5
"""How many previous finished runs (of the flag, on the same set, with the variant) pool into
the baseline."""
MIN_ANSWERS = 10
"""Fewest answers, in the run and in the baseline, before the test gives a verdict."""


def _moments(scores: Sequence[float]) -> tuple[int, float, float]:
    n = len(scores)
    return n, sum(scores), sum(s * s for s in scores)


def regression(current: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """The test of ``current`` scores against ``baseline`` scores (each answer's score, 0..1).

    Returns ``n``, ``score`` (the run's mean), ``baseline_n``, ``baseline_score``, ``drop``
    (baseline minus run), ``se`` (its standard error with the pooled variance), ``z``,
    ``p_value`` (one-sided, toward a drop) and ``alarm``; the figures that need both samples are
    ``None`` (and ``alarm`` false) when either has fewer than :data:`MIN_ANSWERS` answers.
    """
    n, total, _ = _moments(current)
    bn, btotal, _ = _moments(baseline)
    out: dict[str, Any] = {
        "n": n,
        "score": total / n if n else None,
        "baseline_n": bn,
        "baseline_score": btotal / bn if bn else None,
        "drop": None,
        "se": None,
        "z": None,
        "p_value": None,
        "alarm": False,
    }
    if n < MIN_ANSWERS or bn < MIN_ANSWERS:
        return out
    pooled_n, pooled_total, pooled_sq = _moments([*current, *baseline])
    mean = pooled_total / pooled_n
    variance = max(pooled_sq / pooled_n - mean * mean, 0.0)
    drop = btotal / bn - total / n
    se = math.sqrt(variance * (1 / n + 1 / bn))
    if se == 0.0:
        # Every answer scored the same: nothing fell.
        z, p_value = 0.0, 0.5
    else:
        z = drop / se
        p_value = 1.0 - NormalDist().cdf(z)
    out.update(drop=drop, se=se, z=z, p_value=p_value, alarm=p_value < ALPHA)
    return out


def drop_bound(drop: float, se: float, alpha: float = ALPHA) -> float:
    """The one-sided lower ``1 - alpha`` confidence bound on a drop: it exceeds 0 exactly when
    :func:`regression`'s ``p_value < alpha``."""
    return drop - NormalDist().inv_cdf(1.0 - alpha) * se


def _scores(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    by_variant: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_variant[str(row["variant"])].append(float(row["score"]))
    return by_variant


def check_run(
    run: Mapping[str, Any],
    rows: Iterable[Mapping[str, Any]],
    previous: Sequence[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
) -> list[dict[str, Any]]:
    """The test of every variant of ``run`` (its result ``rows``) against its baseline.

    ``previous`` are earlier finished runs of the flag with their rows, newest first; only those
    on the run's golden set (``set_digest``) count, the newest :data:`BASELINE_RUNS` that
    evaluated the variant. Each entry is :func:`regression`'s figures plus ``variant``,
    ``run_id`` and ``baseline_runs`` (their ids, newest first).
    """
    same_set = [
        (r, _scores(rs)) for r, rs in previous if r.get("set_digest") == run.get("set_digest")
    ]
    checks = []
    for variant, scores in sorted(_scores(rows).items()):
        used = [(r, s[variant]) for r, s in same_set if s.get(variant)][:BASELINE_RUNS]
        baseline = [x for _, s in used for x in s]
        checks.append(
            {
                "variant": variant,
                "run_id": run["id"],
                "baseline_runs": [int(r["id"]) for r, _ in used],
                **regression(scores, baseline),
            }
        )
    return checks
