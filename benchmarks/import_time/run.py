"""What does `import vibesdk` cost next to importing its own dependencies, and its first call?

Each sample is a fresh interpreter (``sys.executable -c ...``) that times, with
``time.perf_counter`` around the statement itself:

* ``deps``: ``import httpx, mmh3, pydantic, pydantic_settings, opentelemetry.trace,
  opentelemetry.metrics, tenacity, sniffio`` -- the modules of vibesdk's runtime
  dependencies that ``import vibesdk`` itself imports (the OpenTelemetry SDK and the OTLP
  exporter are imported only by ``configure_telemetry``, so neither side imports them);
* ``import``: ``import vibesdk``;
* ``first_call``: ``import vibesdk``, then a first ``Client(flag_source=...).assign()`` on an
  in-memory document built with ``vibesdk.testing`` (``make_document``; the import of
  ``vibesdk.testing`` itself is timed apart and left out, it is test scaffolding).

Each vibesdk tree is measured from a copy in a temporary folder, two ways: ``cached``, its
bytecode compiled beforehand (as pip does when it installs a wheel), and ``source``, no
bytecode and ``PYTHONDONTWRITEBYTECODE=1`` (a source checkout where nothing writes
``__pycache__``, as on the CI machine). The dependencies always have their installed bytecode.
``--baseline DIR`` measures a second tree (e.g. ``git archive`` of the previous commit) in the
same rounds, so a before/after comparison sees the same noise. Every round runs every row in a
fresh random order; the summary gives medians and the ratio of medians.

    .venv/bin/python benchmarks/import_time/run.py --rounds 30 \\
        --baseline /tmp/base --out benchmarks/import_time/results/DATE-machine.jsonl
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import markdown_table, now_utc, result_header

ROOT = Path(__file__).resolve().parents[2]
DEPS = (
    "httpx, mmh3, pydantic, pydantic_settings, opentelemetry.trace, "
    "opentelemetry.metrics, tenacity, sniffio"
)
DISTRIBUTIONS = [
    "vibesdk",
    "httpx",
    "httpcore",
    "mmh3",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "tenacity",
    "sniffio",
    "click",
    "rich",
]

_TIMED_IMPORT = """
import time
t0 = time.perf_counter()
import {what}
t1 = time.perf_counter()
out = {{"import_ms": (t1 - t0) * 1e3}}
"""
_FIRST_CALL = """
t2 = time.perf_counter()
from vibesdk.testing import InMemoryFlagSource, make_document
t3 = time.perf_counter()
client = vibesdk.Client(flag_source=InMemoryFlagSource(make_document()))
assignment = client.assign("vibethinker", "user-1")
t4 = time.perf_counter()
client.close()
assert assignment.error_code is None, assignment
out["testing_import_ms"] = (t3 - t2) * 1e3
out["first_assign_ms"] = (t4 - t3) * 1e3
out["first_call_ms"] = out["import_ms"] + out["first_assign_ms"]
out["file"] = vibesdk.__file__
"""
_PRINT = "\nimport json\nprint(json.dumps(out))\n"

CODE = {
    "deps": _TIMED_IMPORT.format(what=DEPS) + _PRINT,
    "import": _TIMED_IMPORT.format(what="vibesdk") + "\nout['file'] = vibesdk.__file__" + _PRINT,
    "first_call": _TIMED_IMPORT.format(what="vibesdk") + _FIRST_CALL + _PRINT,
}


def _copy_tree(src: Path, dest: Path, *, compiled: bool) -> Path:
    """A copy of ``src/vibesdk`` under ``dest`` (without bytecode unless ``compiled``)."""
    target = dest / "vibesdk"
    shutil.copytree(src / "vibesdk", target, ignore=shutil.ignore_patterns("__pycache__"))
    if compiled:
        ok = compileall.compile_dir(str(target), quiet=1)
        assert ok, f"could not compile {target}"
    return dest


def _run(code: str, path: Path | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if path is not None:
        env["PYTHONPATH"] = str(path)
    started = time.perf_counter()
    # Run from the copy's folder: `-c` puts the working directory first on sys.path.
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=path or tempfile.gettempdir(),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1e3
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_ms"] = wall
    if path is not None and not result["file"].startswith(str(path)):
        raise SystemExit(f"measured {result['file']}, not the copy under {path}")
    return result


def _breakdown(path: Path, runs: int) -> dict[str, float]:
    """Median self time (ms) of each vibesdk module under ``-X importtime``, deps imported first."""
    code = f"import {DEPS}\nimport sys\nprint('MARK', file=sys.stderr)\nimport vibesdk"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(path)}
    per_module: dict[str, list[float]] = {}
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            env=env,
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in err.split("MARK", 1)[1].splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            _, self_us, _, name = (p.strip() for p in line.replace(":", "|", 1).split("|"))
            per_module.setdefault(name, []).append(int(self_us) / 1e3)
    return dict(
        sorted(
            ((n, statistics.median(v)) for n, v in per_module.items()),
            key=lambda kv: -kv[1],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="a second tree (holding vibesdk/) to compare")
    parser.add_argument("--breakdown-runs", type=int, default=7)
    parser.add_argument("--out", help="JSON lines file to write under results/")
    args = parser.parse_args()

    started = now_utc()
    load_before = os.getloadavg()
    trees = {"this": ROOT} | ({"baseline": args.baseline} if args.baseline else {})
    with tempfile.TemporaryDirectory(prefix="import-time-") as tmp:
        copies: dict[tuple[str, str], Path] = {}
        for tree, src in trees.items():
            for mode in ("cached", "source"):
                dest = Path(tmp) / tree / mode
                copies[tree, mode] = _copy_tree(src, dest, compiled=mode == "cached")
        rows: list[tuple[str, str, str]] = [("deps", "-", "-")]
        rows += [(kind, tree, mode) for (tree, mode) in copies for kind in ("import", "first_call")]
        for key in rows:  # warm the OS file cache; not counted
            _run(CODE[key[0]], copies.get((key[1], key[2])))
        samples: list[dict[str, Any]] = []
        rng = random.Random(args.seed)
        for rnd in range(args.rounds):
            order = rows[:]
            rng.shuffle(order)
            for kind, tree, mode in order:
                got = _run(CODE[kind], copies.get((tree, mode)))
                samples.append(
                    {"kind": "sample", "round": rnd, "row": kind, "tree": tree}
                    | {"mode": mode}
                    | got
                )
            print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr)
        breakdown = {t: _breakdown(copies[t, "cached"], args.breakdown_runs) for t in trees}
    load_after = os.getloadavg()

    def med(kind: str, tree: str, mode: str, field: str) -> float:
        return statistics.median(
            s[field] for s in samples if (s["row"], s["tree"], s["mode"]) == (kind, tree, mode)
        )

    deps = med("deps", "-", "-", "import_ms")
    deps_wall = med("deps", "-", "-", "wall_ms")
    summary: dict[str, Any] = {"kind": "summary", "deps_import_ms": deps, "deps_wall_ms": deps_wall}
    table = []
    for tree, mode in copies:
        imp = med("import", tree, mode, "import_ms")
        first = med("first_call", tree, mode, "first_call_ms")
        row = {
            "import_ms": imp,
            "ratio": imp / deps,
            "wall_ms": med("import", tree, mode, "wall_ms"),
            "ratio_wall": med("import", tree, mode, "wall_ms") / deps_wall,
            "first_assign_ms": med("first_call", tree, mode, "first_assign_ms"),
            "first_call_ms": first,
            "testing_import_ms": med("first_call", tree, mode, "testing_import_ms"),
        }
        summary[f"{tree}/{mode}"] = row
        table.append(
            [
                tree,
                mode,
                f"{deps:.1f}",
                f"{imp:.1f}",
                f"**{row['ratio']:.2f}**",
                f"{row['ratio_wall']:.2f}",
                f"{row['first_assign_ms']:.1f}",
                f"{first:.1f}",
            ]
        )
    summary["breakdown_ms"] = breakdown
    print(
        markdown_table(
            [
                "tree",
                "bytecode",
                "deps ms",
                "import vibesdk ms",
                "ratio",
                "ratio (wall)",
                "first assign ms",
                "import + first assign ms",
            ],
            table,
        )
    )
    for tree, modules in breakdown.items():
        top = ", ".join(f"{n} {ms:.1f}" for n, ms in list(modules.items())[:8])
        print(f"{tree}: slowest vibesdk modules after deps (ms self): {top}")

    if args.out:
        header = {"kind": "header"} | result_header(
            "import_time",
            started=started,
            load_before=load_before,
            load_after=load_after,
            distributions=DISTRIBUTIONS,
            parameters=vars(args) | {"baseline": str(args.baseline), "deps": DEPS},
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as fh:
            for line in [header, *samples, summary]:
                fh.write(json.dumps(line) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
