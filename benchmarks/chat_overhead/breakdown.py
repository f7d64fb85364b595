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

Two more variants put back, in place, only the part of a knocked-out piece
that vibesdk cannot make cheaper, so the table says where the floor is:
``- checks, + ast.parse`` parses the answer's code block (CPython's parser,
what the python-syntax check cannot do without) instead of running the checks,
and ``- telemetry, + the same OTel SDK calls`` makes, after a call with
telemetry knocked out, the SDK calls one call makes (the two spans with the
same attributes, the three metric records with the same attribute sets),
straight on the SDK's tracer and meter: the OpenTelemetry SDK's own cost.
The summary under the table splits the added cost into these parts.

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/breakdown.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE-breakdown.json
"""

from __future__ import annotations

import argparse
import ast
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
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider, SpanKind

import vibesdk
import vibesdk._client.calls_aio as aio_mod
import vibesdk._client.calls_sync as sync_mod
import vibesdk._client.core as core_mod
from server import ANSWER, COMPLETION
from vibesdk import QualityReport
from vibesdk._telemetry import instruments
from vibesdk._telemetry import semconv as sc
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

FLAG = "vibethinker"
SYNC_FLOOR = "bare httpx.Client (MockTransport)"
ASYNC_FLOOR = "bare httpx.AsyncClient (MockTransport)"
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
BASE = "http://127.0.0.1:9"
REPLAY = "- telemetry, + the same OTel SDK calls"


class _Discard(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Keep(SpanProcessor):
    """Keeps the attributes of the last span of each name (to replay them on the SDK)."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, Any]] = {}
        self.active = True

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            self.last[span.name] = dict(span.attributes or {})


# The call span's attributes that vibesdk sets when the answer is in (the rest at the start).
_FINISH_KEYS = frozenset(
    {
        sc.VIBESDK_FALLBACK,
        sc.VIBESDK_QUALITY_PASSED,
        sc.VIBESDK_QUALITY_FAILURES,
        sc.SERVER_ADDRESS,
        sc.SERVER_PORT,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_RESPONSE_ID,
        sc.GEN_AI_RESPONSE_FINISH_REASONS,
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    }
)


def sdk_replay(tp: TracerProvider, mp: MeterProvider, keep: _Keep) -> Callable[[], None]:
    """The OTel SDK calls of one chat call (stable variant), made directly on the SDK."""
    call_name = next(n for n in keep.last if n != sc.SPAN_ATTEMPT)
    call_attrs = keep.last[call_name]
    attempt_attrs = keep.last[sc.SPAN_ATTEMPT]
    start = {k: v for k, v in call_attrs.items() if k not in _FINISH_KEYS}
    finish = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in call_attrs.items()
        if k in _FINISH_KEYS
    }
    backend = f"{BASE}/v1"
    variant = call_attrs[sc.FEATURE_FLAG_RESULT_VARIANT]
    model, provider = call_attrs[sc.GEN_AI_REQUEST_MODEL], call_attrs[sc.GEN_AI_PROVIDER_NAME]
    args = (FLAG, variant, model, provider)
    response_model = call_attrs.get(sc.GEN_AI_RESPONSE_MODEL)
    duration_attrs = dict(instruments._call_attributes(*args, False, None, response_model, backend))
    input_attrs = dict(instruments._token_attributes(*args, sc.GEN_AI_TOKEN_TYPE_INPUT, backend))
    output_attrs = dict(instruments._token_attributes(*args, sc.GEN_AI_TOKEN_TYPE_OUTPUT, backend))
    tracer = tp.get_tracer("replay")
    meter = mp.get_meter("replay")
    duration = meter.create_histogram(
        sc.METRIC_OPERATION_DURATION,
        unit="s",
        explicit_bucket_boundaries_advisory=sc.OPERATION_DURATION_BUCKETS,
    )
    tokens = meter.create_histogram(
        sc.METRIC_TOKEN_USAGE,
        unit="{token}",
        explicit_bucket_boundaries_advisory=sc.TOKEN_USAGE_BUCKETS,
    )

    def replay() -> None:
        span = tracer.start_span(call_name, kind=SpanKind.CLIENT)
        span.set_attributes(start)
        context = trace.set_span_in_context(span)
        attempt = tracer.start_span(sc.SPAN_ATTEMPT, context=context, kind=SpanKind.CLIENT)
        attempt.set_attributes(attempt_attrs)
        attempt.end()
        span.set_attributes(finish)
        span.end()
        duration.record(0.001, duration_attrs)
        tokens.record(20, input_attrs)
        tokens.record(80, output_attrs)

    return replay


def code_block(answer: str) -> str:
    """The python block of ``answer`` (what the python-syntax check parses)."""
    return answer.split("```python\n", 1)[1].split("```", 1)[0]


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
def parse_only(source: str) -> Iterator[None]:
    """The checks knocked out, but the answer's code block still parsed (CPython's parser)."""

    def parse(*a: Any, **kw: Any) -> QualityReport:
        ast.parse(source)
        return QualityReport()

    saved = core_mod.check_answer
    core_mod.check_answer = parse  # type: ignore[assignment]
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


def split(stats: dict[str, dict[str, float]], kind: str) -> dict[str, float]:
    """The added cost of ``kind``'s chat split into parts, from differences of medians.

    The parts are differences of separately measured medians, so they add up to
    the whole only roughly.
    """

    def m(variant: str) -> float:
        return stats[f"{kind}.chat {variant}"]["median"]

    floor = stats[SYNC_FLOOR if kind == "Client" else ASYNC_FLOOR]["median"]
    return {
        "added over bare httpx": m("full") - floor,
        "output checks: CPython's parser (ast.parse of the code block)": m("- checks, + ast.parse")
        - m("- output checks"),
        "output checks: the rest": m("full") - m("- checks, + ast.parse"),
        "telemetry: the OTel SDK's own calls": m(REPLAY) - m("- spans and metrics"),
        "telemetry: vibesdk's side (attributes, ids, guards)": m("full") - m(REPLAY),
        "everything else (assignment, request, response, plan)": m("- checks, telemetry, tenacity")
        - floor,
    }


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
    keep = _Keep()
    tp.add_span_processor(keep)
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

    chat(0)  # one call's spans, to replay on the SDK
    keep.active = False
    replay = sdk_replay(tp, mp, keep)
    source = code_block(ANSWER)

    def chat_replay(i: int) -> str:
        text = chat(i)
        replay()
        return text

    def post(i: int) -> str:
        r = bare.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    async def achat(i: int) -> str:
        return (await aclient.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES)).text

    async def achat_replay(i: int) -> str:
        text = await achat(i)
        replay()
        return text

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
        "- checks, + ast.parse": [lambda: parse_only(source)],
    }
    telemetry_off = [lambda: bound(noop_t, noop_m)]
    # name -> (kind, call, patches); kind "sync" or "async"
    variants: dict[str, tuple[str, Any, list[Callable[[], Any]]]] = {
        SYNC_FLOOR: ("sync", post, []),
        **{f"Client.chat {k}": ("sync", chat, v) for k, v in knockouts.items()},
        f"Client.chat {REPLAY}": ("sync", chat_replay, telemetry_off),
        ASYNC_FLOOR: ("async", apost, []),
        **{f"AsyncClient.chat {k}": ("async", achat, v) for k, v in knockouts.items()},
        f"AsyncClient.chat {REPLAY}": ("async", achat_replay, telemetry_off),
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
    parts = {kind: split(stats, kind) for kind in ("Client", "AsyncClient")}
    print()
    print(
        _common.markdown_table(
            ["part of the added cost (CPU median µs)", "Client.chat", "AsyncClient.chat"],
            [
                [name, f"{parts['Client'][name]:.0f}", f"{parts['AsyncClient'][name]:.0f}"]
                for name in parts["Client"]
            ],
        )
    )
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
            "parts_us": parts,
        },
    )


if __name__ == "__main__":
    main()
