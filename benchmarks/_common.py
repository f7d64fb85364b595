"""Shared helpers for the benchmarks: machine facts, package versions, percentiles, tables.

Benchmarks are scripts, not tests: they run in benchmarks/.venv-bench (see
benchmarks/README.md) and write a JSON result with the machine, the date and
the exact command next to the numbers.
"""

from __future__ import annotations

import datetime as _dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")


def machine() -> dict[str, Any]:
    """CPU model, core count, OS and Python of the machine running the benchmark."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }


def source() -> dict[str, Any]:
    """The git commit of this checkout and whether the SDK's sources differ from it."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    changed = git("status", "--porcelain", "--", "vibesdk")
    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "src_uncommitted_changes": changed.splitlines() if changed else [],
    }


def vibesdk_code() -> dict[str, Any]:
    """Where the vibesdk that was timed was imported from, and the PYTHONPATH that chose it.

    A baseline is timed by putting another commit's ``vibesdk`` first on PYTHONPATH
    (``git archive <commit> vibesdk | tar -x -C <dir>``); ``source`` still names the
    checkout that ran the benchmark.
    """
    module = sys.modules.get("vibesdk")
    path = getattr(module, "__file__", None)
    return {
        "imported_from": os.path.dirname(path) if path else None,
        "pythonpath": os.environ.get("PYTHONPATH"),
    }


def versions(distributions: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution ("missing" when not installed)."""
    found: dict[str, str] = {}
    for name in distributions:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def command_line() -> str:
    """The command that ran this benchmark, ready to paste into a shell at the repo root."""
    exe = os.path.relpath(sys.executable) if not os.path.isabs(sys.argv[0]) else sys.executable
    return shlex.join([exe, *sys.argv])


def result_header(
    benchmark: str,
    *,
    started: str,
    load_before: tuple[float, float, float],
    distributions: Iterable[str],
    parameters: dict[str, Any],
    load_after: tuple[float, float, float] | None = None,
) -> dict[str, Any]:
    """The fields every result file starts with: what ran, when, from which commit, on what.

    ``load_after`` defaults to the load average now, at the end of the measurement.
    """
    return {
        "benchmark": benchmark,
        "date": started,
        "command": command_line(),
        "source": source(),
        "vibesdk_code": vibesdk_code(),
        "machine": machine()
        | {"loadavg_before": load_before, "loadavg_after": load_after or os.getloadavg()},
        "versions": versions(distributions),
        "parameters": parameters,
    }


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, by linear interpolation."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, mean and min of per-call samples (same unit as given)."""
    s = sorted(samples)
    return {
        "median": percentile(s, 50),
        "p90": percentile(s, 90),
        "p99": percentile(s, 99),
        "mean": sum(s) / len(s),
        "min": s[0],
        "samples": len(s),
    }


def interleave(
    run: Callable[[str, int, int], list[_T]],
    names: list[str],
    *,
    rounds: int,
    calls: int,
    seed: int,
    first_user: int = 0,
) -> dict[str, list[_T]]:
    """Samples of each row, measured in rounds so that machine noise hits all rows alike.

    Each round runs ``run(name, first_user_id, calls)`` for every row in a fresh
    random order (``names`` is shuffled in place), numbering users on so no call
    repeats one, and collects garbage between rounds.
    """
    samples: dict[str, list[_T]] = {n: [] for n in names}
    rng = random.Random(seed)
    user = first_user
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            samples[name] += run(name, user, calls)
            user += calls
        gc.collect()
    return samples


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {p}", file=sys.stderr)
