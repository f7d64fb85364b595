"""``pytest --fast``: the inner loop, without the slow groups of tests (``./scripts/test --fast``).

It deselects every test marked ``model`` (starts a real llama.cpp model), ``postgres`` (needs
PostgreSQL) or ``wheels`` (builds the two wheels with pip), in tests/ and server/tests/ alike
(this file sits above both), and says how many of each it left out. Without the option nothing
is deselected: ``./scripts/test`` with no flag is what CI runs.
"""

from __future__ import annotations

import pytest

#: The markers (registered in pyproject.toml) whose tests ``--fast`` leaves out.
SLOW_MARKERS = ("model", "postgres", "wheels")

_deselected = pytest.StashKey[dict[str, int]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help=f"deselect the slow tests: those marked {', '.join(SLOW_MARKERS)}",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("fast"):
        return
    counts = dict.fromkeys(SLOW_MARKERS, 0)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        slow = next((m for m in SLOW_MARKERS if item.get_closest_marker(m)), None)
        if slow is None:
            keep.append(item)
        else:
            counts[slow] += 1
            drop.append(item)
    config.stash[_deselected] = counts
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    counts = config.stash.get(_deselected, None)
    if counts is None:
        return None
    each = ", ".join(f"{n} {marker}" for marker, n in counts.items())
    return f"--fast: deselected {sum(counts.values())} slow tests ({each})"
