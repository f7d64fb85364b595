"""Where the app's CPU goes in run_e2e.py: a py-spy profile summed by part, per call.

Profile a run (py-spy from PyPI, in a throwaway virtualenv; on-CPU samples only)::

    py-spy record -r 100 --subprocesses -f raw -o PROFILE.txt -- \\
        .venv/bin/python benchmarks/release_safety/run_e2e.py --quick --rate 100 \\
        --faults healthy --out RUN.jsonl
    .venv/bin/python benchmarks/release_safety/profile_app.py PROFILE.txt RUN.jsonl --out OUT.json

``PROFILE.txt`` is py-spy's collapsed stacks (``-f raw``; it may be gzipped). Each of the app
process's samples is given to the first *part* whose marker is in its stack (a chat call, the
harness's threads, the event loop, start-up); a chat call's samples are split further by the
innermost frame's library. Functions named with ``--function`` are counted inclusively. The
figures per call divide the samples (``1 / rate`` seconds each) by the run's calls. ``--out``
writes the run's own header (machine, date, commit, load), the run line and the breakdown.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

#: (part, marker in a frame): the first part whose marker is in the stack takes the sample.
PARTS = [
    (
        "harness: the release watcher (a new httpx.Client per 0.5 s poll)",
        "run_one.<locals>.release",
    ),
    ("harness: admin requests", "FlagServer."),
    ("a chat call (Load.one)", "Load.one"),
    ("harness: the load loop (Load.run)", "Load.run"),
    ("harness: the rollout probe", "run_one.<locals>.probe"),
    ("vibesdk: flag stream and sources", "vibesdk/_sources"),
    ("vibesdk: metrics export to the server", "vibesdk/_telemetry"),
    ("OpenTelemetry SDK (outside a call)", "opentelemetry/"),
    ("start-up (imports)", "importlib"),
    ("event loop: waiting in select", "selectors.py"),
    ("event loop: transports and callbacks", "asyncio/"),
]
#: (library, marker in a frame): a chat call's sample goes to its innermost frame's library.
LIBRARIES = [
    ("OpenTelemetry SDK", "opentelemetry/"),
    ("vibesdk: output checks", "vibesdk/_quality"),
    ("vibesdk: telemetry", "vibesdk/_telemetry"),
    ("vibesdk: the rest", "vibesdk/"),
    ("httpcore: connection pool", "httpcore/_async/connection_pool.py"),
    ("httpcore: connections", "httpcore/"),
    ("h11", "h11/"),
    ("httpx", "httpx/"),
    ("anyio", "anyio/"),
    ("json", "json/"),
    ("tenacity", "tenacity/"),
    ("asyncio", "asyncio/"),
]
FUNCTIONS = [
    "AsyncConnectionPool._assign_requests_to_connections",
    "connection_pool.py:294",
    "has_expired",
    "AsyncClient.send",
    "Response.aclose",
]


def _lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode().splitlines()


def summarize(lines: list[str], calls: int, rate: float, functions: list[str]) -> dict[str, Any]:
    """Samples per process, the app's by part and library, and the named functions'."""
    processes: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if len(frames) > 1 and frames[1].startswith("process "):  # a child process
            name = "vibe-server" if "vibesdk_server" in frames[1] else "backends.py"
            processes[name] += n
            continue
        processes["app"] += n
        frames = frames[1:]
        part = next((p for p, m in PARTS if any(m in f for f in frames)), "other")
        parts[part] += n
        if part == "a chat call (Load.one)":
            lib = next((name for f in reversed(frames) for name, m in LIBRARIES if m in f), "other")
            libraries[lib] += n
        for function in functions:
            if function in stack:
                inclusive[function] += n
    app = processes["app"]

    def row(name: str, n: int) -> dict[str, Any]:
        return {
            "name": name,
            "samples": n,
            "share_of_app": round(n / max(1, app), 4),
            "ms_per_call": round(1000 * n / rate / max(1, calls), 3),
        }

    return {
        "samples_per_process": dict(processes),
        "app_cpu_s": round(app / rate, 2),
        "calls": calls,
        "parts": [row(p, n) for p, n in parts.most_common()],
        "chat_call_by_library": [row(p, n) for p, n in libraries.most_common()],
        "functions_inclusive": [row(f, inclusive[f]) for f in functions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output (or .gz)")
    parser.add_argument("run", type=Path, help="run_e2e.py --out of the profiled run")
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's samples per second")
    parser.add_argument("--function", action="append", default=[], help="count inclusively")
    parser.add_argument("--out", type=Path, help="write the summary here (JSON)")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.run.read_text(encoding="utf-8").splitlines()]
    header = next(r for r in records if r["kind"] == "header")
    runs = [r for r in records if r["kind"] == "run"]
    calls = sum(r["calls"] for r in runs)
    summary = summarize(_lines(args.profile), calls, args.rate, FUNCTIONS + args.function)
    for section in ("parts", "chat_call_by_library", "functions_inclusive"):
        print(f"\n{section} (app: {summary['app_cpu_s']} s CPU, {calls} calls)")
        for r in summary[section]:
            print(f"  {r['name']:66s} {r['share_of_app']:6.1%} {r['ms_per_call']:7.3f} ms/call")
    print("\nsamples per process:", summary["samples_per_process"])
    if args.out:
        out = {
            "kind": "profile",
            "profile": args.profile.name,
            "sampling_rate_hz": args.rate,
            "run_header": header,
            "runs": runs,
            **summary,
        }
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
