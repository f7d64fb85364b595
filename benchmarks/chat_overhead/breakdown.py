# ruff: noqa: E402 -- sys.path is set up before the local imports
"""Where vibesdk's added cost per chat call goes: take one part away at a time.

No network here: ``httpx.MockTransport`` answers with the same fixed completion
as server.py, for bare httpx and for ``vibesdk.Client`` alike, so only the
clients' own work is left. Each variant below knocks out one part of
``Client.chat`` by patching it (never done outside this script); the
difference to "vibesdk full" is that part's cost. The variants are
interleaved in rounds and timed by the calling thread's CPU time
(``time.thread_time_ns``), which a shared machine disturbs far less than wall
time. A real OTel SDK is installed: TracerProvider + BatchSpanProcessor (a
discarding exporter) and a MeterProvider.

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/breakdown.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE-breakdown.json
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common
import httpx
from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

import vibesdk
import vibesdk._client.core as core_mod
import vibesdk._client.sync as sync_mod
from server import ANSWER, COMPLETION
from vibesdk._quality.checks import QualityReport
from vibesdk._telemetry import instruments
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

FLAG = "vibethinker"
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
BASE = "http://127.0.0.1:9"


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _OneShot:
    """Stands in for tenacity.Retrying: one attempt, no retry bookkeeping."""

    def __init__(self, **_: Any) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        yield _Attempt()


class _Attempt:
    class retry_state:  # mimics tenacity's attribute
        attempt_number = 1

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False


@contextmanager
def no_checks() -> Iterator[None]:
    saved = core_mod.check_answer
    core_mod.check_answer = lambda text, user_input=None: QualityReport()  # type: ignore[assignment]
    try:
        yield
    finally:
        core_mod.check_answer = saved


@contextmanager
def no_retrying() -> Iterator[None]:
    saved = sync_mod.Retrying
    sync_mod.Retrying = _OneShot  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        sync_mod.Retrying = saved


@contextmanager
def bound(tracer_provider: Any, meter_provider: Any) -> Iterator[None]:
    old = instruments._bind(tracer_provider, meter_provider)
    try:
        yield
    finally:
        instruments._bind(*old)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()

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
    bare = httpx.Client(transport=transport)
    payload = {"model": "stable-model", "messages": MESSAGES, "temperature": 0.0, "max_tokens": 64}
    url = f"{BASE}/v1/chat/completions"
    noop_t, noop_m = NoOpTracerProvider(), NoOpMeterProvider()

    def chat(i: int) -> str:
        return client.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES).text

    def post(i: int) -> str:
        r = bare.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    variants: dict[str, tuple[Callable[[int], str], list[Callable[[], Any]]]] = {
        "bare httpx.Client (MockTransport)": (post, []),
        "vibesdk full": (chat, []),
        "- output checks": (chat, [no_checks]),
        "- spans (no-op tracer)": (chat, [lambda: bound(noop_t, None)]),
        "- metrics (no-op meter)": (chat, [lambda: bound(None, noop_m)]),
        "- spans and metrics": (chat, [lambda: bound(noop_t, noop_m)]),
        "- tenacity Retrying": (chat, [no_retrying]),
        "- checks, telemetry, tenacity": (
            chat,
            [no_checks, no_retrying, lambda: bound(noop_t, noop_m)],
        ),
    }
    cpu = time.thread_time_ns

    def run(name: str, start: int, n: int) -> list[int]:
        fn, patches = variants[name]
        out = []
        with ExitStack() as stack:
            for p in patches:
                stack.enter_context(p())
            for i in range(start, start + n):
                c0 = cpu()
                text = fn(i)
                out.append(cpu() - c0)
                if text != ANSWER:
                    raise RuntimeError(f"{name}: unexpected answer")
        return out

    names = list(variants)
    for name in names:
        run(name, 0, 200)
    samples: dict[str, list[int]] = {n: [] for n in names}
    rng = random.Random(7)
    started = _common.now_utc()
    load_before = os.getloadavg()
    user = 0
    for _ in range(args.rounds):
        rng.shuffle(names)
        for name in names:
            samples[name] += run(name, user, args.calls)
            user += args.calls
        gc.collect()
    stats = {n: _common.summarize([v / 1000 for v in s]) for n, s in samples.items()}
    bare_med = stats["bare httpx.Client (MockTransport)"]["median"]
    full_med = stats["vibesdk full"]["median"]
    rows = []
    for name in variants:
        s = stats[name]
        if name.startswith("bare"):
            note = "(floor)"
        elif name == "vibesdk full":
            note = f"+{s['median'] - bare_med:.0f} over bare"
        else:
            note = f"saves {full_med - s['median']:.0f}"
        rows.append([name, f"{s['median']:.0f}", f"{s['p90']:.0f}", note])
    client.close()
    tp.shutdown()
    mp.shutdown()
    print(_common.markdown_table(["variant", "CPU median µs", "CPU p90 µs", "vs full"], rows))
    _common.write_json(
        args.out,
        {
            "benchmark": "chat_overhead/breakdown",
            "date": started,
            "command": _common.command_line(),
            "machine": _common.machine()
            | {"loadavg_before": load_before, "loadavg_after": os.getloadavg()},
            "versions": _common.versions(
                ["vibesdk", "httpx", "opentelemetry-sdk", "tenacity", "pydantic"]
            ),
            "parameters": vars(args),
            "cpu_us_per_call": stats,
        },
    )


if __name__ == "__main__":
    main()
