# ruff: noqa: E402 -- sys.path is set up before the local imports
"""Interleaved A/B of the 2026-11-28 overhead changes: each one reverted in place, one at a time.

Same set-up as breakdown.py (``httpx.MockTransport``, real OTel SDK with a
batch span processor and a MeterProvider, thread CPU time, interleaved rounds),
but the variants put back the code as it was before each change, taken from
git, so the difference to "current" is what that change saves:

* ``old tenacity`` (commit 8d95b83): a ``Retrying``/``AsyncRetrying`` built for
  every step, attempt 1 included;
* ``old checks`` (commit f5464ab): ``check_answer`` from f5464ab^;
* ``old metrics`` (commit 277d84c): ``Metrics.record_call/tokens/ttft`` from
  277d84c^ (attribute dicts built per record);
* ``all old``: the three together.

And three what-ifs for the steps still open (each changes behaviour, so none
is in the client): ``what-if no attempt span`` (the ``vibesdk.attempt`` child
span not opened), ``what-if checks without ast.parse`` (the python-syntax check
skipped) and ``what-if no checks`` (``check_answer`` not run at all).

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/ab_changes.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE-ab.json
"""

from __future__ import annotations

import argparse
import asyncio
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
from tenacity import AsyncRetrying, Retrying

import vibesdk
import vibesdk._client.aio as aio_mod
import vibesdk._client.core as core_mod
import vibesdk._client.sync as sync_mod
import vibesdk._quality.checks as checks_mod
from server import ANSWER, COMPLETION
from vibesdk import QualityReport
from vibesdk._resilience import retry_strategy
from vibesdk._telemetry import instruments
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
    package = path.removeprefix("src/").rsplit("/", 1)[0].replace("/", ".")
    source = source.replace("from . import", f"from {package} import")
    file = tmp / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _old_run_step(self: Any, call: Any, step: Any) -> Any:
    body = self._core.request_body(call, step)
    headers = self._core.headers(step)
    for attempt in Retrying(sleep=self._sleep, **retry_strategy(call.policy)):
        with attempt:
            return self._post(call, step, body, headers, attempt.retry_state.attempt_number)
    raise AssertionError


async def _old_arun_step(self: Any, call: Any, step: Any) -> Any:
    body = self._core.request_body(call, step)
    headers = self._core.headers(step)
    async for attempt in AsyncRetrying(sleep=self._sleep, **retry_strategy(call.policy)):
        with attempt:
            return await self._post(call, step, body, headers, attempt.retry_state.attempt_number)
    raise AssertionError


@contextmanager
def _patch(obj: Any, name: str, value: Any) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


def _without_backend(method: Callable[..., None]) -> Callable[..., None]:
    """An old ``record_*`` method called the way the client calls it today.

    The old methods predate ``backend=`` (server.address/port); it is dropped, so the
    comparison is of everything else.
    """

    def record(self: Any, **kwargs: Any) -> None:
        kwargs.pop("backend", None)
        method(self, **kwargs)

    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vibesdk-ab-"))
    old_checks = _old_module("old_checks", "f5464ab^", "src/vibesdk/_quality/checks.py", tmp)
    old_instr = _old_module(
        "old_instruments", "277d84c^", "src/vibesdk/_telemetry/instruments.py", tmp
    )

    def old_tenacity() -> AbstractContextManager[Any]:
        stack = ExitStack()
        stack.enter_context(_patch(sync_mod.Client, "_run_step", _old_run_step))
        stack.enter_context(_patch(aio_mod.AsyncClient, "_run_step", _old_arun_step))
        return stack

    def old_checks_() -> AbstractContextManager[Any]:
        return _patch(core_mod, "check_answer", old_checks.check_answer)

    def old_metrics() -> AbstractContextManager[Any]:
        stack = ExitStack()
        for name in ("record_call", "record_tokens", "record_ttft"):
            old = _without_backend(getattr(old_instr.Metrics, name))
            stack.enter_context(_patch(instruments.Metrics, name, old))
        return stack

    start_span = core_mod._start_span

    def no_attempt_span() -> AbstractContextManager[Any]:
        def start(name: str, context: Any) -> Any:
            return trace.INVALID_SPAN if name == "vibesdk.attempt" else start_span(name, context)

        return _patch(core_mod, "_start_span", start)

    def no_syntax_check() -> AbstractContextManager[Any]:
        return _patch(checks_mod, "_syntax_error", lambda source: None)

    def no_checks() -> AbstractContextManager[Any]:
        return _patch(core_mod, "check_answer", lambda *a, **kw: QualityReport())

    changes: dict[str, list[Callable[[], AbstractContextManager[Any]]]] = {
        "current": [],
        "old tenacity": [old_tenacity],
        "old checks": [old_checks_],
        "old metrics": [old_metrics],
        "all old": [old_tenacity, old_checks_, old_metrics],
        "what-if no attempt span": [no_attempt_span],
        "what-if checks without ast.parse": [no_syntax_check],
        "what-if no checks": [no_checks],
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
