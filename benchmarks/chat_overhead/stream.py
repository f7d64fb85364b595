"""What vibesdk adds to each streamed chunk, over reading the same stream with bare httpx.

The GPU benchmark (benchmarks/gpu_serving) compares ``vibesdk.AsyncClient.stream_chat`` with a
direct client at 16 streams x 512 tokens, where a difference of a few per cent is within the
GPU host's round-to-round spread. This measures the SDK's own share without a GPU: a loopback
server (its own process) streams ``--tokens`` OpenAI-style SSE chunks per request as fast as it
can, eight chunks per write, and the client reads ``--streams`` such streams at once on one event
loop. Rows, interleaved in rounds (a fresh random order each round):

* ``httpx`` -- ``httpx.AsyncClient.stream(...)``, each ``data:`` line parsed with ``json.loads``
  and its ``delta.content`` counted: the floor any Python client pays (its rounds' clients share
  one TLS context, as vibesdk's clients of a process do);
* ``vibesdk`` -- ``vibesdk.AsyncClient.stream_chat`` through an in-memory flag document whose
  canary (100 %) is the server, as the GPU benchmark's ``--client sdk`` does: assignment, the
  reviewed prompt, the streaming call with its deadlines, the chunks, the final result; no
  OpenTelemetry SDK installed (as there).

Each round's figure is the client process's CPU time (``time.process_time``) per chunk received.
The server's CPU is its own process's, not counted. Run from the repository root::

    benchmarks/.venv-bench/bin/python benchmarks/chat_overhead/stream.py \\
        --out benchmarks/chat_overhead/results/DATE-MACHINE-stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import socket
import ssl
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _sse  # noqa: E402
from _common import interleave, markdown_table, now_utc, result_header, write_json  # noqa: E402


def _serve(sock: socket.socket, tokens: int) -> None:
    """The loopback server: every POST gets ``tokens`` chunks, then a usage chunk and [DONE]."""
    token = _sse.chat_chunk(" tok")
    tail = _sse.last_events(tokens, "stop")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await _sse.read_request(reader)
                writer.write(_sse.HEAD)
                for start in range(0, tokens, 8):
                    writer.write(_sse.frame(token * (min(tokens, start + 8) - start)))
                    await writer.drain()
                writer.write(_sse.frame(tail, last=True))
                await writer.drain()
        writer.close()

    _sse.serve(sock, handle)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every round's httpx client, as vibesdk's clients of a process share
    one: a round's CPU must not count loading the CA bundle (~17 ms) for one row only."""
    import httpx

    return httpx.create_ssl_context()


async def _httpx(url: str, streams: int, tokens: int) -> int:
    import httpx

    got = 0
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": tokens}
    async with httpx.AsyncClient(timeout=60, verify=_tls()) as client:

        async def one() -> None:
            nonlocal got
            async with client.stream("POST", url + "/chat/completions", json=body) as r:
                r.raise_for_status()
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        choices = json.loads(line[6:])["choices"]
                        if choices and choices[0]["delta"].get("content"):
                            got += 1

        await asyncio.gather(*(one() for _ in range(streams)))
    return got


async def _vibesdk(url: str, streams: int, tokens: int, first_user: int) -> int:
    import vibesdk
    from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

    got = 0
    flag = make_flag("vibethinker", canary_url=[url], rollout_bps=10_000)
    source = InMemoryFlagSource(make_document(flag))
    async with vibesdk.AsyncClient(flag_source=source) as client:

        async def one(user: int) -> None:
            nonlocal got
            ask = [{"role": "user", "content": "hi"}]
            async for chunk in client.stream_chat(
                "vibethinker", f"u{user}", ask, max_tokens=tokens
            ):
                if chunk.text:
                    got += 1
                if chunk.done and chunk.result is not None and chunk.result.fallback:
                    raise RuntimeError(f"fell back: {chunk.result.fallback_reason}")

        await asyncio.gather(*(one(first_user + i) for i in range(streams)))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rate", type=float, default=3300.0,
                    help="tokens/s at 16 x 512 on the GPU: for the share of a core")  # fmt: skip
    ap.add_argument("--out")
    args = ap.parse_args()

    url, server = _sse.start(_serve, args.tokens)
    started, load_before = now_utc(), os.getloadavg()
    expected = args.streams * args.tokens

    def run(name: str, first_user: int, rounds: int) -> list[dict[str, float]]:
        out = []
        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            if name == "httpx":
                got = asyncio.run(_httpx(url, args.streams, args.tokens))
            else:
                got = asyncio.run(_vibesdk(url, args.streams, args.tokens, first_user))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            # the SDK may merge the last token into its final chunk: at most one per stream
            if not expected - args.streams <= got <= expected:
                raise SystemExit(f"{name}: {got} chunks, expected {expected}")
            out.append({"cpu_us_per_chunk": cpu / got * 1e6, "wall_s": wall})
        return out

    try:
        interleave(run, ["httpx", "vibesdk"], rounds=args.warmup, calls=1, seed=args.seed)
        samples = interleave(
            run, ["httpx", "vibesdk"], rounds=args.rounds, calls=1, seed=args.seed + 1
        )
    finally:
        server.terminate()
    rows = {}
    for name, values in samples.items():
        per_chunk = sorted(v["cpu_us_per_chunk"] for v in values)
        rows[name] = {
            "cpu_us_per_chunk_median": statistics.median(per_chunk),
            "cpu_us_per_chunk_min": per_chunk[0],
            "cpu_us_per_chunk_max": per_chunk[-1],
            "wall_s_median": statistics.median(v["wall_s"] for v in values),
            "rounds": values,
        }
    added = rows["vibesdk"]["cpu_us_per_chunk_median"] - rows["httpx"]["cpu_us_per_chunk_median"]
    result = result_header(
        "chat_overhead/stream",
        started=started,
        load_before=load_before,
        distributions=["vibesdk", "httpx", "httpcore"],
        parameters=vars(args),
    ) | {
        "rows": rows,
        "added_cpu_us_per_chunk": added,
        "added_share_of_a_core_at_rate": added * args.rate / 1e6,
    }
    print(
        markdown_table(
            ["row", "client CPU per chunk, median (min-max)", "wall per round, median"],
            [
                (
                    name,
                    f"{r['cpu_us_per_chunk_median']:.1f} µs ({r['cpu_us_per_chunk_min']:.1f}"
                    f"-{r['cpu_us_per_chunk_max']:.1f})",
                    f"{r['wall_s_median']:.3f} s",
                )
                for name, r in rows.items()
            ],
        )
    )
    print(
        f"vibesdk adds {added:.1f} µs of client CPU per chunk: {added * args.rate / 1e4:.2f} % of "
        f"one core at {args.rate:,.0f} tokens/s"
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
