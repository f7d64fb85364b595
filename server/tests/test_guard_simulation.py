"""The release-safety simulation: its vectorised bound is the guard's; peeking keeps to alpha."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from vibesdk_server._guard.stats import Moments, canary_bound, difference_bound

SIMULATE = Path(__file__).resolve().parents[2] / "benchmarks" / "release_safety" / "simulate.py"


@pytest.fixture(scope="module")
def simulate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_safety_simulate", SIMULATE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_vectorised_bounds_match_the_guards_statistics(simulate: ModuleType) -> None:
    """On random counts the simulation's numpy bounds equal stats.difference_bound/canary_bound."""
    rng = np.random.default_rng(3)
    n_c = rng.integers(1, 5_000, size=200).astype(float)
    n_s = rng.integers(1, 50_000, size=200).astype(float)
    e_c = np.floor(n_c * rng.random(200) * 0.2)
    e_s = np.floor(n_s * rng.random(200) * 0.2)
    diff = simulate.difference_lower(e_c, n_c, e_s, n_s)
    one = simulate.proportion_lower(e_c, n_c)
    for i in range(200):
        c = Moments.of_count(int(e_c[i]), int(n_c[i]))
        s = Moments.of_count(int(e_s[i]), int(n_s[i]))
        assert diff[i] == pytest.approx(difference_bound(c, s).bound, rel=1e-9, abs=1e-12)
        assert one[i] == pytest.approx(canary_bound(c).bound, rel=1e-9, abs=1e-12)


def test_quick_aa_run_stays_within_alpha_where_naive_peeking_does_not(
    simulate: ModuleType,
) -> None:
    """400 A/A releases, 180 peeks: the CS rolls back <= 5%, the naive z-test far more."""
    rows = simulate.run_all(quick=True, seed=1)
    aa, absolute = rows[0], rows[1]
    assert aa["cs_false_rollback_rate"] <= 0.05
    assert absolute["cs_false_breach_rate"] <= 0.05
    assert aa["naive_peeking_false_rollback_rate"] > 0.10
    power = {r["p_canary"]: r for r in rows if r["scenario"] == "power"}
    assert power[0.06]["caught_share"] >= 0.95
