# ruff: noqa: E402 -- sys.path is set up before the local imports
"""Interleaved A/B of the latest speed changes: each one reverted in place, one at a time.

The set-up of breakdown.py (``httpx.MockTransport``, real OTel SDK with a batch
span processor and a MeterProvider, thread CPU time, interleaved rounds), with
variants that put back the code of ``--base`` (default c656f69, before the
changes), taken from git, so the difference to "current" is what each change
saves, measured in one process where the machine's noise hits every variant
alike:

* ``old checks``: ``check_answer`` of the base (the diversity rule tokenized
  every answer, even those too short to judge);
* ``old span attributes``: ``ClientCore._start_attributes`` of the base (the
  call span's flag and request attributes built on every call);
* ``old watching``: the generator-based ``watching`` context manager of the
  base (three per call);
* ``all old``: the three together.

(The 2026-11-28 changes were measured by this script as it was at c656f69:
``git show c656f69:benchmarks/chat_overhead/ab_changes.py``.)

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/ab_changes.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE-ab.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common
import httpx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import vibesdk
import vibesdk._client.calls_aio as aio_mod
import vibesdk._client.calls_sync as sync_mod
import vibesdk._client.core as core_mod
import vibesdk._watch as watch_mod
from server import ANSWER, COMPLETION
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

FLAG = "vibethinker"
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
BASE = "http://127.0.0.1:9"


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _old_module(name: str, commit: str, path: str, tmp: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    # The old file's relative imports point at the current package (unchanged parts).
    package = path.rsplit("/", 1)[0].replace("/", ".")
    source = source.replace("from .", f"from {package}.")
    file = tmp / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _old_watching(watch: Any) -> Iterator[None]:
    # The base's watching(), word for word, on the current module's context variable.
    token = watch_mod.current.set(watch)
    try:
        yield
    finally:
        watch_mod.current.reset(token)


@contextmanager
def _patch(obj: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out")
    parser.add_argument("--base", default="c656f69", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vibesdk-ab-"))
    old_checks = _old_module("old_checks", args.base, "vibesdk/_quality/checks.py", tmp)
    old_core = _old_module("old_core", args.base, "vibesdk/_client/core.py", tmp)

    def old_checks_() -> AbstractContextManager[Any]:
        return _patch(core_mod, "check_answer", old_checks.check_answer)

    def old_attributes() -> AbstractContextManager[Any]:
        old = old_core.ClientCore._start_attributes
        return _patch(core_mod.ClientCore, "_start_attributes", old)

    def old_watching() -> AbstractContextManager[Any]:
        stack = ExitStack()
        stack.enter_context(_patch(sync_mod, "watching", _old_watching))
        stack.enter_context(_patch(aio_mod, "watching", _old_watching))
        return stack

    changes: dict[str, list[Callable[[], AbstractContextManager[Any]]]] = {
        "current": [],
        "old checks": [old_checks_],
        "old span attributes": [old_attributes],
        "old watching": [old_watching],
        "all old": [old_checks_, old_attributes, old_watching],
    }

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(_Discard()))
    trace.set_tracer_provider(tp)
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    metrics.set_meter_provider(mp)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=COMPLETION, headers={"content-type": "application/json"})

    transport = httpx.MockTransport(handler)
    doc = make_document(make_flag(FLAG, stable_url=f"{BASE}/v1", canary_url=f"{BASE}/v1"))
    client = vibesdk.Client(flag_source=InMemoryFlagSource(doc), transport=transport)
    aclient = vibesdk.AsyncClient(flag_source=InMemoryFlagSource(doc), transport=transport)
    loop = asyncio.new_event_loop()
    cpu = time.thread_time_ns

    async def arun(start: int, n: int) -> list[int]:
        out = []
        for i in range(start, start + n):
            c0 = cpu()
            r = await aclient.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES)
            out.append(cpu() - c0)
            if r.text != ANSWER:
                raise RuntimeError("unexpected answer")
        return out

    def srun(start: int, n: int) -> list[int]:
        out = []
        for i in range(start, start + n):
            c0 = cpu()
            r = client.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES)
            out.append(cpu() - c0)
            if r.text != ANSWER:
                raise RuntimeError("unexpected answer")
        return out

    variants = {
        f"{kind} {name}": (kind, p) for kind in ("sync", "async") for name, p in changes.items()
    }

    def run(name: str, start: int, n: int) -> list[int]:
        kind, patches = variants[name]
        with ExitStack() as stack:
            for p in patches:
                stack.enter_context(p())
            if kind == "async":
                return loop.run_until_complete(arun(start, n))
            return srun(start, n)

    names = list(variants)
    for name in names:
        run(name, 0, 200)
    started = _common.now_utc()
    load_before = os.getloadavg()
    samples = _common.interleave(
        run, names, rounds=args.rounds, calls=args.calls, seed=3, first_user=1000
    )
    stats = {n: _common.summarize([v / 1000 for v in s]) for n, s in samples.items()}
    rows = []
    for name, (kind, _) in variants.items():
        median = stats[name]["median"]
        current = stats[f"{kind} current"]["median"]
        note = "" if name.endswith(" current") else f"{median - current:+.0f}"
        rows.append([name, f"{median:.0f}", f"{stats[name]['p90']:.0f}", note])
    loop.run_until_complete(aclient.aclose())
    loop.close()
    client.close()
    tp.shutdown()
    mp.shutdown()
    print(_common.markdown_table(["variant", "CPU median µs", "CPU p90 µs", "vs current"], rows))
    _common.write_json(
        args.out,
        {
            **_common.result_header(
                "chat_overhead/ab_changes",
                started=started,
                load_before=load_before,
                distributions=["vibesdk", "httpx", "opentelemetry-sdk", "tenacity", "pydantic"],
                parameters=vars(args),
            ),
            "cpu_us_per_call": stats,
        },
    )


if __name__ == "__main__":
    main()
