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
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
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
import vibesdk._client.aio as aio_mod
import vibesdk._client.core as core_mod
import vibesdk._client.sync as sync_mod
from server import ANSWER, COMPLETION
from vibesdk import QualityReport
from vibesdk._telemetry import instruments
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

FLAG = "vibethinker"
SYNC_FLOOR = "bare httpx.Client (MockTransport)"
ASYNC_FLOOR = "bare httpx.AsyncClient (MockTransport)"
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


class _AsyncOneShot(_OneShot):
    """Stands in for tenacity.AsyncRetrying."""

    def __aiter__(self) -> _AsyncOneShot:
        self._done = False
        return self

    async def __anext__(self) -> _Attempt:
        if self._done:
            raise StopAsyncIteration
        self._done = True
        return _Attempt()


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
    core_mod.check_answer = lambda *a, **kw: QualityReport()  # type: ignore[assignment]
    try:
        yield
    finally:
        core_mod.check_answer = saved


@contextmanager
def no_retrying() -> Iterator[None]:
    saved, asaved = sync_mod.Retrying, aio_mod.AsyncRetrying
    sync_mod.Retrying = _OneShot  # type: ignore[assignment,misc]
    aio_mod.AsyncRetrying = _AsyncOneShot  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        sync_mod.Retrying, aio_mod.AsyncRetrying = saved, asaved


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
    parser.add_argument("--rounds", type=int, default=40)
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

    aclient = vibesdk.AsyncClient(flag_source=InMemoryFlagSource(doc), transport=transport)
    abare = httpx.AsyncClient(transport=transport)
    loop = asyncio.new_event_loop()

    def chat(i: int) -> str:
        return client.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES).text

    def post(i: int) -> str:
        r = bare.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    async def achat(i: int) -> str:
        return (await aclient.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES)).text

    async def apost(i: int) -> str:
        r = await abare.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    knockouts: dict[str, list[Callable[[], Any]]] = {
        "full": [],
        "- output checks": [no_checks],
        "- spans (no-op tracer)": [lambda: bound(noop_t, None)],
        "- metrics (no-op meter)": [lambda: bound(None, noop_m)],
        "- spans and metrics": [lambda: bound(noop_t, noop_m)],
        "- tenacity Retrying": [no_retrying],
        "- checks, telemetry, tenacity": [no_checks, no_retrying, lambda: bound(noop_t, noop_m)],
    }
    # name -> (kind, call, patches); kind "sync" or "async"
    variants: dict[str, tuple[str, Any, list[Callable[[], Any]]]] = {
        SYNC_FLOOR: ("sync", post, []),
        **{f"Client.chat {k}": ("sync", chat, v) for k, v in knockouts.items()},
        ASYNC_FLOOR: ("async", apost, []),
        **{f"AsyncClient.chat {k}": ("async", achat, v) for k, v in knockouts.items()},
    }
    cpu = time.thread_time_ns

    async def arun(fn: Callable[[int], Awaitable[str]], start: int, n: int) -> list[int]:
        out = []
        for i in range(start, start + n):
            c0 = cpu()
            text = await fn(i)
            out.append(cpu() - c0)
            if text != ANSWER:
                raise RuntimeError("unexpected answer")
        return out

    def run(name: str, start: int, n: int) -> list[int]:
        kind, fn, patches = variants[name]
        with ExitStack() as stack:
            for p in patches:
                stack.enter_context(p())
            if kind == "async":
                return loop.run_until_complete(arun(fn, start, n))
            out = []
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
    started = _common.now_utc()
    load_before = os.getloadavg()
    samples = _common.interleave(run, names, rounds=args.rounds, calls=args.calls, seed=7)
    stats = {n: _common.summarize([v / 1000 for v in s]) for n, s in samples.items()}
    rows = []
    for name, (kind, _, _) in variants.items():
        s = stats[name]
        floor = stats[SYNC_FLOOR if kind == "sync" else ASYNC_FLOOR]["median"]
        full = stats["Client.chat full" if kind == "sync" else "AsyncClient.chat full"]["median"]
        if name in (SYNC_FLOOR, ASYNC_FLOOR):
            note = "(floor)"
        elif name.endswith(" full"):
            note = f"+{s['median'] - floor:.0f} over bare"
        else:
            note = f"saves {full - s['median']:.0f}"
        rows.append([name, f"{s['median']:.0f}", f"{s['p90']:.0f}", note])
    loop.run_until_complete(aclient.aclose())
    loop.run_until_complete(abare.aclose())
    loop.close()
    client.close()
    tp.shutdown()
    mp.shutdown()
    print(_common.markdown_table(["variant", "CPU median µs", "CPU p90 µs", "vs full"], rows))
    _common.write_json(
        args.out,
        {
            **_common.result_header(
                "chat_overhead/breakdown",
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
