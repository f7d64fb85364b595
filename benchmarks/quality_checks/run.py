# ruff: noqa: E402, RUF001 -- sys.path is set up before the local imports; Chinese test text
"""check_answer() time per answer, on realistic answers of about 4 KB (and the short one
the chat_overhead benchmark uses), with the share of it that ``ast.parse`` takes.

The target is "< 1 ms for 4 KB". Each answer is checked in interleaved rounds (a
fresh random order each round) so machine noise hits all rows alike; each round times a
batch of calls per row with ``time.thread_time_ns`` (CPU time of this thread: steadier than
wall time on a shared machine; wall time is kept in the JSON too); percentiles are over
batches.

Run from the repository root (no extra packages needed)::

    .venv/bin/python benchmarks/quality_checks/run.py \
        --out benchmarks/quality_checks/results/DATE-MACHINE.json
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "chat_overhead"))

import _common

from server import ANSWER as SHORT_ANSWER
from vibesdk import check_answer
from vibesdk._quality.checks import _fenced_blocks, _python_source

REAL = json.loads((ROOT / "tests" / "data" / "smollm2-answers.json").read_text("utf-8"))
REAL_BY_NAME = {a["name"]: a["text"] for a in REAL["answers"]}

PROSE_EN = (
    "Rayleigh scattering explains why the sky is blue. Sunlight contains every visible "
    "wavelength; when it meets the molecules of the atmosphere, shorter wavelengths are "
    "scattered much more strongly than longer ones, in proportion to the inverse fourth power "
    "of the wavelength. Blue light is therefore redirected across the whole sky, while the "
    "direct beam keeps more of its red and yellow. At sunrise and sunset the light crosses far "
    "more air, so most of the blue is scattered away before it reaches you. "
)
PROSE_ZH = (
    "快速排序是一种分治算法。它先选一个基准元素，把比基准小的元素放到左边，比基准大的放到右边，"
    "然后对左右两部分递归地做同样的事情。平均时间复杂度是 O(n log n)，最坏情况是 O(n^2)，"
    "通常通过随机选择基准来避免最坏情况。它是原地排序，额外空间主要来自递归栈。"
)
CODE_BLOCK = '''def quicksort(items: list[int]) -> list[int]:
    """Sort a list with quicksort (not in place)."""
    if len(items) <= 1:
        return items
    pivot = items[len(items) // 2]
    left = [x for x in items if x < pivot]
    middle = [x for x in items if x == pivot]
    right = [x for x in items if x > pivot]
    return quicksort(left) + middle + quicksort(right)


def test_quicksort() -> None:
    import random

    for n in range(50):
        data = [random.randint(-100, 100) for _ in range(n)]
        assert quicksort(data) == sorted(data)
'''


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def answers() -> dict[str, str]:
    prose_en = " ".join(
        f"{sentence.strip()} (note {i})."
        for i, sentence in enumerate(_fill(PROSE_EN, 4096).split(". "))
    )[:4096]
    prose_zh = "".join(f"{s}（{i}）。" for i, s in enumerate(_fill(PROSE_ZH, 1400).split("。")))
    mixed = (
        prose_en[:1400]
        + "\n\n```python\n"
        + _fill(CODE_BLOCK, 2000).rsplit("\n", 1)[0]
        + "\n```\n\n"
        + prose_en[:600]
    )
    code_heavy = (
        "Here is the implementation:\n\n```python\n"
        + (CODE_BLOCK * 6)[:3900].rsplit("\n", 1)[0]
        + "\n```\n"
    )
    return {
        "the chat_overhead answer (3-line python block)": SHORT_ANSWER,
        "English prose, 4 KB": prose_en,
        "Chinese prose, 1,563 characters (4.6 KB UTF-8)": prose_zh,
        "English prose + a 2 KB python block, 4 KB": mixed,
        "a 3.3 KB python block and one line of prose": code_heavy,
        "real loop (SmolLM2 en_facts)": REAL_BY_NAME["en_facts"],
        "real code loop (SmolLM2 zh_sort)": REAL_BY_NAME["zh_sort"],
    }


def parse_only(text: str) -> Callable[[], object]:
    sources = [_python_source(b.body, b.info) for b in _fenced_blocks(text) if b.info == "python"]

    def run() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for source in sources:
                with contextlib.suppress(SyntaxError):
                    ast.parse(source)
        return None

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()

    texts = answers()
    rows: dict[str, Callable[[], object]] = {}
    for name, text in texts.items():
        rows[name] = lambda text=text: check_answer(text)
        rows[name + " [ast.parse only]"] = parse_only(text)
    load_before = os.getloadavg()
    for fn in rows.values():  # warm up
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in rows}
    wall: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        order = list(rows)
        random.shuffle(order)
        for name in order:
            fn = rows[name]
            start_cpu, start = time.thread_time_ns(), time.perf_counter_ns()
            for _ in range(args.batch):
                fn()
            end_cpu, end = time.thread_time_ns(), time.perf_counter_ns()
            samples[name].append((end_cpu - start_cpu) / args.batch / 1000)
            wall[name].append((end - start) / args.batch / 1000)
    load_after = os.getloadavg()

    table = []
    results = {}
    for name, text in texts.items():
        total = _common.summarize(samples[name])
        parse = _common.summarize(samples[name + " [ast.parse only]"])
        verdict = list(check_answer(text).failures)
        results[name] = {"chars": len(text), "failures": verdict, "check_answer_cpu_us": total,
                         "ast_parse_cpu_us": parse,
                         "check_answer_wall_us": _common.summarize(wall[name])}  # fmt: skip
        table.append([name, len(text), f"{total['median']:.0f}", f"{total['p90']:.0f}",
                      f"{parse['median']:.0f}", ", ".join(verdict) or "(passed)"])  # fmt: skip
    header = ["answer", "characters", "CPU median µs", "CPU p90 µs", "ast.parse µs", "failures"]
    print(_common.markdown_table(header, table))
    _common.write_json(
        args.out,
        {
            "benchmark": "quality_checks",
            "date": _common.now_utc(),
            "command": _common.command_line(),
            "machine": {
                **_common.machine(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
            },
            "versions": _common.versions(["vibesdk"]),
            "parameters": {"rounds": args.rounds, "batch": args.batch},
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
