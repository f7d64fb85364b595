"""What vibesdk adds to a chat call, over a bare httpx POST to the same loopback server.

One process, one loopback server (server.py, in its own process, answering at
once with a fixed OpenAI-compatible completion), a real OpenTelemetry SDK
installed as the host app would: a TracerProvider with a BatchSpanProcessor
and a MeterProvider with a PeriodicExportingMetricReader, both exporting
OTLP/HTTP to the loopback server. Rows, interleaved in rounds (a fresh random
order each round, every call timed with ``time.perf_counter_ns``):

* bare ``httpx.Client().post(...).json()`` (client reused) and the same with
  ``httpx.AsyncClient``: the floor;
* ``vibesdk.Client.chat`` and ``vibesdk.AsyncClient.chat`` (assign + prompt +
  call + checks + span + metrics);
* LiteLLM ``Router.completion`` / ``Router.acompletion`` with one deployment
  pointing at the same server, its telemetry and callbacks off.

"Added" is a row's median minus its bare-httpx median (sync vs sync, async vs
async). Run from the repository root::

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/run.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# LiteLLM must not fetch its model price map from the internet at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _common  # noqa: E402

FLAG = "vibethinker"
MESSAGES = [{"role": "user", "content": "What is the sum of the first n odd numbers?"}]
DISTRIBUTIONS = [
    "vibesdk",
    "httpx",
    "httpcore",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "litellm",
    "openai",
    "tenacity",
    "pydantic",
]

SyncCall = Callable[[int], str]
AsyncCall = Callable[[int], Awaitable[str]]


class Server:
    """server.py in a child process; stops when we close its stdin."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"

    def stats(self) -> dict[str, int]:
        import httpx

        return httpx.get(self.base + "/stats").json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CountingExporter:
    """Wraps a span exporter to count what the batch processor handed it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spans = 0
        self.names: dict[str, int] = {}

    def export(self, spans: Any) -> Any:
        self.spans += len(spans)
        for s in spans:
            key = s.name.split(" ", 1)[0]
            self.names[key] = self.names.get(key, 0) + 1
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def install_otel(base: str) -> tuple[Any, Any, CountingExporter]:
    """What a host app does: an SDK tracer provider and meter provider, exporting OTLP."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "chat-overhead-bench"})
    counting = CountingExporter(OTLPSpanExporter(endpoint=f"{base}/v1/traces"))
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(counting))  # type: ignore[arg-type]
    trace.set_tracer_provider(tp)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics"), export_interval_millis=5_000
    )
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(mp)
    return tp, mp, counting


def vibesdk_document(base: str, rollout_bps: int) -> Any:
    from vibesdk.testing import make_document, make_flag

    return make_document(
        make_flag(FLAG, stable_url=f"{base}/v1", canary_url=f"{base}/v1", rollout_bps=rollout_bps)
    )


def vibesdk_client_kwargs(doc: Any) -> tuple[dict[str, Any], str]:
    """Build the Client offline: an in-memory flag source if there is one, else a bootstrap file."""
    try:
        from vibesdk.testing import InMemoryFlagSource  # type: ignore[attr-defined]

        return {"flag_source": InMemoryFlagSource(doc)}, "flag_source=InMemoryFlagSource(doc)"
    except ImportError:
        path = Path(tempfile.mkdtemp(prefix="vibesdk-bench-")) / "flags.json"
        path.write_text(doc.model_dump_json(), encoding="utf-8")
        return {"bootstrap": str(path)}, "bootstrap='flags.json'"


def build_rows(
    base: str, rollout_bps: int, closers: list[Callable[[], Any]], aclosers: list[Any]
) -> tuple[dict[str, SyncCall], dict[str, AsyncCall], dict[str, str], dict[str, str]]:
    sync_rows: dict[str, SyncCall] = {}
    async_rows: dict[str, AsyncCall] = {}
    how: dict[str, str] = {}
    skipped: dict[str, str] = {}
    url = f"{base}/v1/chat/completions"
    payload = {"model": "stable-model", "messages": MESSAGES, "temperature": 0.0, "max_tokens": 64}

    import httpx

    hc = httpx.Client()
    closers.append(hc.close)

    def bare_sync(i: int) -> str:
        r = hc.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    sync_rows["bare httpx.Client"] = bare_sync
    how["bare httpx.Client"] = "httpx.Client().post(url, json=payload) + raise_for_status + .json()"

    ahc = httpx.AsyncClient()
    aclosers.append(ahc.aclose)

    async def bare_async(i: int) -> str:
        r = await ahc.post(url, json=payload)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]  # type: ignore[no-any-return]

    async_rows["bare httpx.AsyncClient"] = bare_async
    how["bare httpx.AsyncClient"] = (
        "await httpx.AsyncClient().post(...) + raise_for_status + .json()"
    )

    try:
        import vibesdk

        doc = vibesdk_document(base, rollout_bps)
        kwargs, built = vibesdk_client_kwargs(doc)
        client = vibesdk.Client(**kwargs)  # type: ignore[attr-defined]
        closers.append(client.close)

        def vibe_sync(i: int) -> str:
            return client.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES).text  # type: ignore[no-any-return]

        sync_rows["vibesdk Client.chat"] = vibe_sync
        how["vibesdk Client.chat"] = (
            f"vibesdk.Client({built}).chat(flag, user_id=..., messages=...)"
        )

        kwargs, built = vibesdk_client_kwargs(doc)
        aclient = vibesdk.AsyncClient(**kwargs)  # type: ignore[attr-defined]
        aclosers.append(aclient.aclose)

        async def vibe_async(i: int) -> str:
            r = await aclient.chat(FLAG, user_id=f"user-{i}", messages=MESSAGES)
            return r.text  # type: ignore[no-any-return]

        async_rows["vibesdk AsyncClient.chat"] = vibe_async
        how["vibesdk AsyncClient.chat"] = f"await vibesdk.AsyncClient({built}).chat(...)"
    except Exception as exc:  # the public clients may not exist yet
        skipped["vibesdk"] = f"{type(exc).__name__}: {exc}"

    try:
        import litellm
        from litellm import Router

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        litellm.success_callback = []
        litellm.failure_callback = []
        litellm.callbacks = []
        litellm.turn_off_message_logging = True
        logging.getLogger("LiteLLM").setLevel(logging.ERROR)
        router = Router(
            model_list=[
                {
                    "model_name": "stable",
                    "litellm_params": {
                        "model": "openai/stable-model",
                        "api_base": f"{base}/v1",
                        "api_key": "sk-bench",
                    },
                }
            ],
            num_retries=0,
        )

        def litellm_sync(i: int) -> str:
            r = router.completion(model="stable", messages=MESSAGES, temperature=0.0, max_tokens=64)
            return r.choices[0].message.content  # type: ignore[no-any-return]

        async def litellm_async(i: int) -> str:
            r = await router.acompletion(
                model="stable", messages=MESSAGES, temperature=0.0, max_tokens=64
            )
            return r.choices[0].message.content  # type: ignore[no-any-return]

        sync_rows["LiteLLM Router.completion"] = litellm_sync
        async_rows["LiteLLM Router.acompletion"] = litellm_async
        how["LiteLLM Router.completion"] = "Router(one openai/ deployment at the server).completion"
        how["LiteLLM Router.acompletion"] = "await Router(...).acompletion"
    except Exception as exc:
        skipped["litellm"] = f"{type(exc).__name__}: {exc}"
    return sync_rows, async_rows, how, skipped


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="write the JSON result here")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per row per round")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per row first")
    parser.add_argument(
        "--rollout-bps",
        type=int,
        default=1000,
        help="vibesdk canary share (both variants hit the server)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    started = _common.now_utc()
    server = Server()
    closers: list[Callable[[], Any]] = []
    aclosers: list[Any] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        tp, mp, counting = install_otel(server.base)
        sync_rows, async_rows, how, skipped = build_rows(
            server.base, args.rollout_bps, closers, aclosers
        )
        for name, reason in skipped.items():
            print(f"skipped {name}: {reason}", file=sys.stderr)

        from server import ANSWER  # the fixed answer every row must return

        # Wall time is what a caller waits; the calling thread's CPU time is
        # the client's own work, much steadier on a shared machine (it leaves
        # out work the SDKs push to background threads, e.g. span export).
        perf, cpu = time.perf_counter_ns, time.thread_time_ns

        async def run_async(fn: AsyncCall, start: int, n: int) -> list[tuple[int, int]]:
            out = []
            for i in range(start, start + n):
                t0, c0 = perf(), cpu()
                text = await fn(i)
                out.append((perf() - t0, cpu() - c0))
                if text != ANSWER:
                    raise RuntimeError(f"unexpected answer {text[:60]!r}")
            return out

        def run_sync(fn: SyncCall, start: int, n: int) -> list[tuple[int, int]]:
            out = []
            for i in range(start, start + n):
                t0, c0 = perf(), cpu()
                text = fn(i)
                out.append((perf() - t0, cpu() - c0))
                if text != ANSWER:
                    raise RuntimeError(f"unexpected answer {text[:60]!r}")
            return out

        names = [*sync_rows, *async_rows]

        def run_row(name: str, start: int, n: int) -> list[tuple[int, int]]:
            if name in sync_rows:
                return run_sync(sync_rows[name], start, n)
            return loop.run_until_complete(run_async(async_rows[name], start, n))

        for name in names:
            run_row(name, 0, args.warmup)
        load_before = os.getloadavg()
        t_start = time.monotonic()
        samples = _common.interleave(
            run_row, names, rounds=args.rounds, calls=args.calls, seed=args.seed
        )
        elapsed = time.monotonic() - t_start

        load_after = os.getloadavg()
        tp.force_flush()
        mp.force_flush()
        server_counts = server.stats()
        tp.shutdown()
        mp.shutdown()
        stats = {n: _common.summarize([w / 1000 for w, _ in v]) for n, v in samples.items()}
        cpu_stats = {n: _common.summarize([c / 1000 for _, c in v]) for n, v in samples.items()}
        for table_ in (stats, cpu_stats):
            for name, s in table_.items():
                base = "bare httpx.AsyncClient" if name in async_rows else "bare httpx.Client"
                if name != base and base in table_:
                    s["added_median"] = s["median"] - table_[base]["median"]
                    s["added_p90"] = s["p90"] - table_[base]["p90"]
                    s["added_p99"] = s["p99"] - table_[base]["p99"]
    finally:
        for aclose in aclosers:
            with contextlib.suppress(Exception):
                loop.run_until_complete(aclose())
        for close in closers:
            with contextlib.suppress(Exception):
                close()
        loop.close()
        server.stop()

    doc = {
        **_common.result_header(
            "chat_overhead",
            started=started,
            load_before=load_before,
            load_after=load_after,
            distributions=DISTRIBUTIONS,
            parameters=vars(args),
        ),
        "how_each_row_is_called": how,
        "skipped": skipped,
        "timed_seconds": round(elapsed, 1),
        "us_per_call": stats,
        "cpu_us_per_call": cpu_stats,
        "telemetry": {
            "spans_exported": counting.spans,
            "spans_by_name": counting.names,
            "server_requests_by_path": server_counts,
        },
    }
    print(f"\n### chat overhead ({doc['timed_seconds']} s timed)\n")
    print("wall time per call:\n")
    print(table(stats))
    print("\nCPU time of the calling thread per call:\n")
    print(table(cpu_stats))
    print(f"\nspans exported: {counting.spans} {counting.names}; server saw {server_counts}")
    _common.write_json(args.out, doc)


def table(stats: dict[str, dict[str, float]]) -> str:
    order = [
        "bare httpx.Client",
        "vibesdk Client.chat",
        "LiteLLM Router.completion",
        "bare httpx.AsyncClient",
        "vibesdk AsyncClient.chat",
        "LiteLLM Router.acompletion",
    ]
    rows = []
    for name in [n for n in order if n in stats]:
        s = stats[name]
        added = f"{s['added_median']:+.0f}" if "added_median" in s else "(floor)"
        rows.append([name, f"{s['median']:.0f}", f"{s['p90']:.0f}", f"{s['p99']:.0f}", added])
    return _common.markdown_table(
        ["row", "median µs", "p90 µs", "p99 µs", "added at median µs"], rows
    )


if __name__ == "__main__":
    main()
