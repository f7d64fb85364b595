"""Review scores (1..5) per variant and the agreement between two reviewers (pure functions).

**Per variant**: the mean score, ``n`` and a two-sided 95% Student-t interval of the mean,
``mean ± t(0.975, n-1) · s / sqrt(n)``, clipped to the scale [1, 5]; ``n == 1`` has no
interval. Every score counts, so an item two reviewers scored counts twice.

**Agreement** is measured on the items that at least two reviewers scored, between the first
two scores of each item (in the order given: the store gives them oldest first):

* ``exact``: the share of those items where both gave the same score;
* ``within_one``: the share where the scores differ by at most 1;
* ``weighted_kappa``: Cohen's kappa with quadratic weights over the 5 x 5 table of score pairs,
  ``1 - sum(w·observed) / sum(w·expected)``, ``w = (i - j)²``, ``expected`` from the two
  margins -- agreement beyond chance, where near misses count as near. It is ``None`` below
  :data:`KAPPA_MIN_ITEMS` items, or when the margins leave nothing to disagree about (every
  score the same).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "KAPPA_MIN_ITEMS",
    "SCORE_MAX",
    "SCORE_MIN",
    "agreement",
    "agreement_line",
    "per_variant",
    "t_975",
]

SCORE_MIN = 1
SCORE_MAX = 5
KAPPA_MIN_ITEMS = 10
"""Fewer items than this give a kappa too noisy to print; the shares are given from one item."""

# Student t, two-sided 95% (the 0.975 quantile), for 1..30 degrees of freedom.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z_975 = 1.959963984540054


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (``df >= 1``).

    From a table up to 30; above, the Cornish-Fisher expansion around the normal quantile
    (within 0.001 of the exact value there).
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    z = _Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def per_variant(scores: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{variant, n, mean, ci95}`` per variant of ``scores`` (rows with ``variant`` and
    ``score``), sorted by variant; ``ci95`` is ``[low, high]`` or ``None`` for one score."""
    by_variant: dict[str, list[int]] = defaultdict(list)
    for row in scores:
        by_variant[str(row["variant"])].append(int(row["score"]))
    out = []
    for variant in sorted(by_variant):
        values = by_variant[variant]
        n = len(values)
        mean = sum(values) / n
        interval = None
        if n > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
            half = t_975(n - 1) * sd / math.sqrt(n)
            interval = [
                round(max(float(SCORE_MIN), mean - half), 4),
                round(min(float(SCORE_MAX), mean + half), 4),
            ]
        out.append({"variant": variant, "n": n, "mean": round(mean, 4), "ci95": interval})
    return out


def agreement(scores: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """How well two reviewers agree, over items (``trace_id``) with two scores or more.

    ``{"items", "exact", "within_one", "weighted_kappa", "measure"}``; the shares are ``None``
    when no item has two scores.
    """
    first_two: dict[str, list[int]] = defaultdict(list)
    for row in scores:
        pair = first_two[str(row["trace_id"])]
        if len(pair) < 2:
            pair.append(int(row["score"]))
    pairs = [(p[0], p[1]) for p in first_two.values() if len(p) == 2]
    n = len(pairs)
    return {
        "items": n,
        "exact": round(sum(a == b for a, b in pairs) / n, 4) if n else None,
        "within_one": round(sum(abs(a - b) <= 1 for a, b in pairs) / n, 4) if n else None,
        "weighted_kappa": _quadratic_kappa(pairs) if n >= KAPPA_MIN_ITEMS else None,
        "measure": "first two scores per item: exact and within-1 shares; Cohen's kappa with"
        f" quadratic weights from {KAPPA_MIN_ITEMS} items",
    }


def _quadratic_kappa(pairs: list[tuple[int, int]]) -> float | None:
    n = len(pairs)
    levels = range(SCORE_MIN, SCORE_MAX + 1)
    first = {k: sum(a == k for a, _ in pairs) for k in levels}
    second = {k: sum(b == k for _, b in pairs) for k in levels}
    observed = sum((a - b) ** 2 for a, b in pairs) / n
    expected = sum((i - j) ** 2 * first[i] * second[j] for i in levels for j in levels) / (n * n)
    if expected == 0:
        return None
    return round(1 - observed / expected, 4)


def agreement_line(agreement: Mapping[str, Any], reviewers: list[str]) -> str:
    """Reviewer agreement in one line, for people (``vibe review stats``, the dashboard)."""
    who = f"{len(reviewers)} reviewer" + ("" if len(reviewers) == 1 else "s")
    if not agreement["items"]:
        return f"agreement: no answer scored by two reviewers yet ({who})"
    kappa = agreement["weighted_kappa"]
    return (
        f"agreement on {agreement['items']} answers scored twice ({who}):"
        f" {agreement['exact']:.0%} equal, {agreement['within_one']:.0%} within 1,"
        + (
            f" weighted kappa n/a (needs {KAPPA_MIN_ITEMS} answers and some spread)"
            if kappa is None
            else f" weighted kappa {kappa:.2f}"
        )
    )
