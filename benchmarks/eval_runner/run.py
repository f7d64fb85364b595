# ruff: noqa: E402 -- sys.path is set up before the local imports
"""The evaluation runner's throughput, and what the code sandbox costs per code item.

1. Throughput: ``run_tasks`` (what ``vibe eval run`` and the server's scheduled runs use) sends
   a synthetic golden set through real ``vibesdk.Client``s to a loopback fake backend that
   answers at once, and scores every answer (math-verify workers for math, the sandbox for
   code), at several concurrency levels. Items per second, wall clock, per (kind, concurrency)
   row; the rows are interleaved in rounds, a fresh random order each round.
2. Sandbox overhead: the wall time of ``Sandbox.run`` (a fresh locked-down interpreter, the
   answer's code and a trivial passing test) next to ``exec`` of the same code and test in this
   process, interleaved call by call.

Run from the repository root with the project's own virtualenv (the server's ``eval`` extra)::

    .venv/bin/python benchmarks/eval_runner/run.py \
        --out benchmarks/eval_runner/results/DATE-MACHINE.jsonl

The result file is JSON Lines: a header line (machine, date, commit, parameters), then one line
per row.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common
from vibesdk_server._eval.golden import Item
from vibesdk_server._eval.runner import plan_tasks, run_tasks
from vibesdk_server._eval.sandbox import Sandbox
from vibesdk_server._eval.scoring import Scorer

from vibesdk.testing import FakeBackend, Reply, make_document, make_flag

FLAG = "vibethinker"
CODE = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(2, 3) == 5\n"


def items(kind: str, n: int) -> list[Item]:
    """``n`` distinct items of ``kind``, each answered right by :func:`answer`."""
    if kind == "math":
        return [
            Item(
                id=f"m{i}",
                kind="math",
                prompt=f"[{i}] What is {i} + {i}? Put the final answer in \\boxed{{}}.",
                lang="en",
                tags=(),
                answer=str(2 * i),
            )
            for i in range(n)
        ]
    return [
        Item(
            id=f"c{i}",
            kind="code",
            prompt=f"[{i}] Write a Python function add(a, b) that returns a + b.",
            lang="en",
            tags=(),
            entry_point="add",
            tests=TESTS,
        )
        for i in range(n)
    ]


def answer(request: Any) -> str:
    content = request["messages"][-1]["content"]
    number = int(content[1 : content.index("]")])
    if "Write a Python function" in content:
        return f"```python\n{CODE}```"
    return (
        f"We add {number} to itself: doubling {number} gives {2 * number}, so the answer is "
        f"\\boxed{{{2 * number}}}."
    )


def throughput(
    fake: FakeBackend, scorer: Scorer, kind: str, concurrency: int, n: int
) -> dict[str, Any]:
    document = make_document(
        make_flag(stable_url=fake.url, canary_url=fake.url, rollout_bps=0), version=1
    )
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    run_tasks(
        document,
        FLAG,
        plan_tasks(items(kind, n), ["canary"], 1),
        scorer=scorer,
        concurrency=concurrency,
        on_result=rows.append,
    )
    elapsed = time.perf_counter() - started
    wrong = [r for r in rows if r["score"] != 1.0]
    if wrong:
        raise SystemExit(f"{kind}: {len(wrong)} answers scored wrong, e.g. {wrong[0]}")
    return {"items": len(rows), "seconds": elapsed, "items_per_s": len(rows) / elapsed}


def sandbox_overhead(calls: int, seed: int) -> dict[str, Any]:
    sandbox = Sandbox()
    times: dict[str, list[float]] = {"sandbox": [], "in_process": [], "sandbox_process": []}
    rng = random.Random(seed)
    try:
        sandbox.run(CODE, TESTS)  # the first run probes the isolation; not counted
        for _ in range(calls):
            order = ["sandbox", "in_process"]
            rng.shuffle(order)
            for name in order:
                started = time.perf_counter()
                if name == "sandbox":
                    result = sandbox.run(CODE, TESTS)
                    if not result.passed:
                        raise SystemExit(f"the sandbox failed the trivial test: {result}")
                    times["sandbox_process"].append(result.elapsed_s)
                else:
                    exec(compile(CODE + TESTS, "<answer>", "exec"), {})
                times[name].append(time.perf_counter() - started)
        isolation = sandbox.isolation
    finally:
        sandbox.close()
    return {
        "isolation": dataclasses.asdict(isolation),
        **{f"{name}_ms": _common.summarize([t * 1000 for t in v]) for name, v in times.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40, help="math items per row and round (40)")
    parser.add_argument(
        "--code-items", type=int, default=12, help="code items per row and round (12)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every row (3)")
    parser.add_argument("--concurrency", default="1,4,16", help="levels, comma-separated")
    parser.add_argument("--sandbox-calls", type=int, default=40, help="sandbox runs (40)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the results here (JSON Lines)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    started = _common.now_utc()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []

    names = [(kind, c) for kind in ("math", "code") for c in levels]
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {n: [] for n in names}
    rng = random.Random(args.seed)
    with (
        FakeBackend(default=Reply(text=answer), model="instant") as fake,
        Scorer() as scorer,
    ):
        throughput(fake, scorer, "math", 4, 8)  # warm-up: workers started, imports done
        throughput(fake, scorer, "code", 4, 8)
        for _ in range(args.rounds):
            rng.shuffle(names)
            for kind, c in names:
                n = args.items if kind == "math" else args.code_items
                samples[(kind, c)].append(throughput(fake, scorer, kind, c, n))
    for (kind, c), got in sorted(samples.items()):
        rates = sorted(s["items_per_s"] for s in got)
        rows.append(
            {
                "row": "throughput",
                "kind": kind,
                "concurrency": c,
                "items_per_round": args.items if kind == "math" else args.code_items,
                "rounds": len(got),
                "items_per_s_median": _common.percentile(rates, 50),
                "items_per_s_min": rates[0],
                "items_per_s_max": rates[-1],
            }
        )
    rows.append({"row": "sandbox_overhead", **sandbox_overhead(args.sandbox_calls, args.seed)})

    header = _common.result_header(
        "eval_runner",
        started=started,
        load_before=load_before,
        distributions=["vibesdk", "vibesdk-server", "math-verify"],
        parameters={
            "items": args.items,
            "code_items": args.code_items,
            "rounds": args.rounds,
            "concurrency": levels,
            "sandbox_calls": args.sandbox_calls,
            "seed": args.seed,
            "scorer_workers": min(4, os.cpu_count() or 1),
        },
    )
    lines = [json.dumps(header), *(json.dumps(r) for r in rows)]
    print(
        _common.markdown_table(
            ["kind", "concurrency", "items/s median", "min", "max"],
            (
                [
                    r["kind"],
                    r["concurrency"],
                    f"{r['items_per_s_median']:.1f}",
                    f"{r['items_per_s_min']:.1f}",
                    f"{r['items_per_s_max']:.1f}",
                ]
                for r in rows
                if r["row"] == "throughput"
            ),
        )
    )
    box = rows[-1]
    print(
        f"sandbox: median {box['sandbox_ms']['median']:.1f} ms, p90 "
        f"{box['sandbox_ms']['p90']:.1f} ms; in process: median "
        f"{box['in_process_ms']['median'] * 1000:.1f} µs"
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
