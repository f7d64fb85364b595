"""Per-variant figures of an evaluation run, from its stored results (pure functions).

The CLI prints these and the flag server stores them with the run, computed by the same
:func:`summarize` from the same rows, so a table and ``vibe eval history`` always agree.
A result is one answer to one item by one variant (``attempt`` counts ``--repeat``); a call
that failed, or that stable answered after the variant failed (``fallback``), counts as a
wrong answer of the variant: it is what the variant gave.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vibesdk_server._vibe.demo_report import percentile

__all__ = ["Z_95", "summarize", "wilson_interval"]

Z_95 = 1.959963984540054
"""The standard normal quantile for a two-sided 95% interval."""


def wilson_interval(successes: float, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); ``None`` for ``n == 0``.

    ``successes`` may be fractional: ``mean x n`` for scores in [0, 1] (the trend's intervals).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or ``n``
    successes, which small golden sets hit all the time.
    """
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 or n successes the bound is exactly 0 or 1; floating point would miss it by 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _proportion(rows: Sequence[Mapping[str, Any]], field: str, name: str) -> dict[str, Any]:
    """``n``, the count of rows with ``field`` true, their share ``name`` and its Wilson CI."""
    hits = sum(1 for r in rows if r.get(field))
    interval = wilson_interval(hits, len(rows))
    return {
        "n": len(rows),
        field: hits,
        name: hits / len(rows) if rows else None,
        f"{name}_ci95": None if interval is None else list(interval),
    }


def _numbers(rows: Iterable[Mapping[str, Any]], field: str) -> list[float]:
    return [float(r[field]) for r in rows if r.get(field) is not None]


def _math(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        **_proportion(rows, "correct", "accuracy"),
        "completeness": _mean(_numbers(rows, "completeness")),
        "score": _mean(_numbers(rows, "score")),
    }


def _code(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        **_proportion(rows, "passed", "pass_at_1"),
        "conciseness": _mean(_numbers(rows, "conciseness")),
    }


def _variant(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    latencies = _numbers(rows, "latency_s")
    output_tokens = _numbers(rows, "output_tokens")
    models = Counter(r.get("model") for r in rows if r.get("model") and not r.get("fallback"))
    refs = Counter(r.get("prompt_ref") for r in rows if r.get("prompt_ref"))
    return {
        "n": len(rows),
        "model": models.most_common(1)[0][0] if models else None,
        "prompt_ref": refs.most_common(1)[0][0] if refs else None,
        "math": _math([r for r in rows if r.get("kind") == "math"]),
        "code": _code([r for r in rows if r.get("kind") == "code"]),
        "score": _mean(_numbers(rows, "score")),
        "check_failures": sum(1 for r in rows if r.get("checks")),
        "errors": sum(1 for r in rows if r.get("error") and not r.get("fallback")),
        "fallbacks": sum(1 for r in rows if r.get("fallback")),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "input_tokens": int(sum(_numbers(rows, "input_tokens"))),
        "output_tokens": int(sum(output_tokens)),
        "output_tokens_mean": _mean(output_tokens),
    }


def summarize(
    rows: Iterable[Mapping[str, Any]], variants: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """Figures per variant (``variants`` first, in that order, then any other seen).

    Per variant: ``math`` (``n``, ``accuracy`` with its Wilson ``accuracy_ci95``, mean
    ``completeness``, mean ``score`` = accuracy x completeness per item), ``code`` (``n``,
    ``pass_at_1`` with ``pass_at_1_ci95``, mean ``conciseness``), the combined ``score`` (mean
    item score over both kinds), output-check failures, errors, fallbacks, latency p50/p95
    (nearest rank, seconds) and tokens. Each repeat of an item counts as one trial.
    """
    by_variant: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_variant[str(row["variant"])].append(row)
    order = [*variants, *sorted(set(by_variant) - set(variants))]
    return {name: _variant(by_variant.get(name, [])) for name in order}
