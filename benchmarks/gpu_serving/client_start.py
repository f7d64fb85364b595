"""How far apart a client's concurrent streams start, against a server streaming like llama-server.

The GPU benchmark's SDK-vs-direct rounds (16 streams x 512 tokens of chat, each round a fresh
loadgen run: fresh worker processes, a fresh client in each) put ``vibesdk.AsyncClient`` 4-7 %
below direct aiohttp in session 16, with the SDK's times to first token spread twice as wide.
This runs the same loadgen rounds with no GPU: a loopback server (its own process) answers every
chat request as llama-server's batch would, one SSE event per stream per ``--step-ms`` in
lockstep, the first one a step after the request arrives, with Nagle's algorithm on (llama-server's
HTTP library leaves TCP_NODELAY off). Rows, interleaved in rounds, each run in a fresh process
(``loadgen.py``'s command line) so that no row inherits another's imports:

* ``aiohttp`` -- the direct client of the GPU benchmark;
* ``httpx`` -- bare ``httpx.AsyncClient``, the HTTP library under the SDK (and the openai package);
* ``sdk`` -- ``vibesdk.AsyncClient.stream_chat``;
* ``httpx-lazy``, ``sdk-lazy`` -- the same with ``LOADGEN_PREIMPORT_ANYIO=0``: each worker's first
  request imports anyio's asyncio backend, as every GPU round before session 16's third call did.

Each row's figure per round: tokens/s over the round's wall time, time to first token (P50,
P95, max) and its ratio to aiohttp in the same round. Run from the repository root::

    benchmarks/.venv-bench/bin/python benchmarks/gpu_serving/client_start.py \\
        --out benchmarks/gpu_serving/results/DATE-MACHINE-client-start.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _sse  # noqa: E402
from _common import interleave, markdown_table, now_utc, result_header, write_json  # noqa: E402

ROWS = {
    "aiohttp": ("aiohttp", "1"),
    "httpx": ("httpx", "1"),
    "sdk": ("sdk", "1"),
    "httpx-lazy": ("httpx", "0"),
    "sdk-lazy": ("sdk", "0"),
}


def _serve(sock: socket.socket, step_s: float) -> None:
    """The loopback server: one token per stream per step, all streams on one clock."""
    token = _sse.chat_chunk(" tok")
    tick = asyncio.Event()

    async def clock() -> None:
        nonlocal tick
        while True:
            await asyncio.sleep(step_s)
            fired, tick = tick, asyncio.Event()
            fired.set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # as llama-server's cpp-httplib: Nagle's algorithm on
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tokens = int((await _sse.read_request(reader)).get("max_tokens", 16))
                await tick.wait()  # the prompt joins the next step
                writer.write(_sse.HEAD)
                for _ in range(tokens):
                    await tick.wait()
                    writer.write(_sse.frame(token))
                writer.write(_sse.frame(_sse.last_events(tokens, "length"), last=True))
                await writer.drain()
        writer.close()

    _sse.serve(sock, handle, clock)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--step-ms", type=float, default=4.8,
                    help="ms between two tokens of a stream (H100, 16 x 512: ~4.8)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--processes", type=int, help="loadgen's worker processes (default: its own)")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    names = args.rows.split(",")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")

    url, server = _sse.start(_serve, args.step_ms / 1000)
    started, load_before = now_utc(), os.getloadavg()

    def run(name: str, _user: int, _calls: int) -> list[dict[str, Any]]:
        client, preimport = ROWS[name]
        env = {**os.environ, "LOADGEN_PREIMPORT_ANYIO": preimport}
        command = [sys.executable, str(HERE / "loadgen.py"), "--url", url, "--client", client,
                   "--concurrency", str(args.streams), "--n-predict", str(args.tokens),
                   "--endpoint", "chat", "--server", "plain"]  # fmt: skip
        if args.processes:
            command += ["--processes", str(args.processes)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{name}: loadgen failed:\n{done.stderr[-2000:]}")
        res = json.loads(done.stdout)
        if res["errors"]:
            raise SystemExit(f"{name}: {res['errors']} failed requests: {res['first_error']}")
        return [res]

    try:
        run("aiohttp", 0, 1)  # untimed: the server's first connections
        samples = interleave(run, list(names), rounds=args.rounds, calls=1, seed=args.seed)
    finally:
        server.terminate()
    rows = {}
    for name in names:
        values = samples[name]
        rows[name] = {
            "total_tps_median": statistics.median(v["total_tps"] for v in values),
            "ttft_p50_s_median": statistics.median(v["ttft_p50_s"] for v in values),
            "ttft_p95_s_median": statistics.median(v["ttft_p95_s"] for v in values),
            "rounds": values,
        }
    base = sum(v["total_tps"] for v in samples.get("aiohttp", [])) or None
    for name, row in rows.items():
        row["share_of_aiohttp_on_sums"] = (
            sum(v["total_tps"] for v in samples[name]) / base if base else None
        )
    result = result_header(
        "gpu_serving/client_start",
        started=started,
        load_before=load_before,
        distributions=["vibesdk", "httpx", "httpcore", "anyio", "aiohttp"],
        parameters=vars(args),
    ) | {"rows": rows}
    print(
        markdown_table(
            ["row", "tokens/s, median", "share of aiohttp (sums)", "TTFT P50 / P95, medians"],
            [
                (
                    name,
                    f"{r['total_tps_median']:,.0f}",
                    f"{r['share_of_aiohttp_on_sums']:.1%}" if base else "-",
                    f"{r['ttft_p50_s_median'] * 1e3:.1f} / {r['ttft_p95_s_median'] * 1e3:.1f} ms",
                )
                for name, r in rows.items()
            ],
        )
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
