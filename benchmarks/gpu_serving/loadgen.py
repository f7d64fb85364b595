"""Closed-loop load generator for OpenAI-compatible servers: N streams, fixed answer length.

Every stream sends its requests one after another (``--requests-per-stream``), each asking for
exactly ``n_predict`` tokens (``ignore_eos`` for llama-server; a -100 logit bias on the end tokens
for servers without it), streaming, and records time to first token, end-to-end latency and the
tokens received. With ``--lengths staggered`` streams 0, 1, 2, 3, 4, ... ask for 4/4, 3/4, 2/4,
1/4, 4/4, ... of ``n_predict``, so answers end at four different times and leave idle slots
between busy ones.
The streams are spread over several worker processes so the Python client is never the bottleneck.

Clients (``--client``):
  aiohttp  bare aiohttp, the fastest Python client (the "direct" numbers)
  httpx    a bare ``httpx.AsyncClient`` (what the SDK uses underneath)
  sdk      ``vibesdk.AsyncClient`` (streaming), through an in-memory flag document whose canary
           variant (100% rollout) has the URLs; compare it with ``--server plain`` (the same
           request body, sent directly)

    python loadgen.py --url http://127.0.0.1:8080/v1 --concurrency 16 --n-predict 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

# Qwen2's end-of-text and ChatML end-of-turn ids: banned where the server has no ignore_eos.
END_TOKEN_IDS = (151643, 151645)
PROMPT = (
    "Problem {i}: Let a, b, c be positive reals with a + b + c = 3. "
    "Prove that a^2 + b^2 + c^2 >= 3 and find when equality holds. Think step by step."
)


@dataclass
class RequestResult:
    stream: int
    start: float
    ttft: float | None
    e2e: float
    tokens: int
    error: str | None = None


LENGTHS = ("equal", "staggered")


def stream_tokens(n_predict: int, lengths: str, stream: int) -> int:
    """The tokens stream ``stream`` asks for: ``n_predict``, or with ``staggered`` lengths
    4/4, 3/4, 2/4, 1/4 of it by the stream's index (at least 1)."""
    if lengths == "equal":
        return n_predict
    if lengths == "staggered":
        return max(1, n_predict * (4 - stream % 4) // 4)
    raise ValueError(f"lengths {lengths!r}: one of {', '.join(LENGTHS)}")


def _body(
    endpoint: str, i: int, n_predict: int, server: str, sampling: dict[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"stream": True, "max_tokens": n_predict, **sampling}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": PROMPT.format(i=i)}]
    else:
        body["prompt"] = PROMPT.format(i=i)
    if server == "llama-server":
        body["ignore_eos"] = True
        body["stream_options"] = {"include_usage": True}
    elif server == "plain":
        # What vibesdk.AsyncClient sends for the same call (no ignore_eos: the SDK has none),
        # including the canary variant's reviewed system prompt (``--client sdk`` applies it).
        # The runs of 2026-11-28 predate the system message: their direct requests had a prompt
        # ~25 tokens shorter than the SDK's.
        body["stream_options"] = {"include_usage": True}
        if endpoint == "chat":
            from vibesdk.testing import VIBETHINKER_SYSTEM_PROMPT

            body["messages"].insert(0, {"role": "system", "content": VIBETHINKER_SYSTEM_PROMPT})
    else:
        body["logit_bias"] = {str(t): -100 for t in END_TOKEN_IDS}
    return body


def _path(endpoint: str) -> str:
    return "/chat/completions" if endpoint == "chat" else "/completions"


def _usage_tokens(line: bytes) -> int | None:
    if b'"usage"' not in line:
        return None
    try:
        usage = json.loads(line[6:]).get("usage") or {}
    except ValueError:
        return None
    value = usage.get("completion_tokens")
    return int(value) if value is not None else None


async def _read_stream(lines: AsyncIterator[bytes], t0: float) -> tuple[float | None, int]:
    """Time to first content chunk and tokens (usage if sent, else chunks) of an SSE body."""
    ttft = None
    chunks = 0
    usage = None
    async for line in lines:
        if not line.startswith(b"data: "):
            continue
        if line.startswith(b"data: [DONE]"):
            break
        u = _usage_tokens(line)
        if u is not None:
            usage = u
        if b'"content"' in line or b'"text"' in line:
            if ttft is None:
                ttft = time.perf_counter() - t0
            chunks += 1
    return ttft, usage if usage is not None else chunks


async def _aiohttp_stream(session: Any, url: str, body: dict[str, Any]) -> tuple[float | None, int]:
    t0 = time.perf_counter()
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        return await _read_stream(resp.content, t0)


async def _httpx_stream(client: Any, url: str, body: dict[str, Any]) -> tuple[float | None, int]:
    t0 = time.perf_counter()
    async with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}")
        return await _read_stream((text.encode() async for text in resp.aiter_lines()), t0)


async def _sdk_stream(client: Any, s: int, body: dict[str, Any]) -> tuple[float | None, int]:
    ttft = None
    tokens = 0
    t0 = time.perf_counter()
    # Every sampling parameter the direct request carries, and None for those it leaves out: the
    # flag's canary params (make_flag's say top_k 64) must not add what the direct side lacks.
    params = {k: body.get(k) for k in ("temperature", "top_p", "top_k")}
    params["max_tokens"] = body["max_tokens"]
    user_msg = [m for m in body["messages"] if m["role"] == "user"]
    async for chunk in client.stream_chat("vibethinker", f"user-{s}", user_msg, **params):
        if chunk.text and ttft is None:
            ttft = time.perf_counter() - t0
        if chunk.done and chunk.result is not None:
            if chunk.result.fallback:
                raise RuntimeError(f"fell back: {chunk.result.fallback_reason}")
            tokens = chunk.result.usage.output_tokens or 0
    return ttft, tokens


async def _worker_async(
    cfg: dict[str, Any], streams: list[int], start_at: float
) -> list[RequestResult]:
    urls: list[str] = cfg["urls"]
    results: list[RequestResult] = []
    client_kind = cfg["client"]

    if client_kind == "aiohttp":
        import aiohttp

        # force_close: llama-server closes the connection after a streamed answer without saying
        # so (no "Connection: close"), and aiohttp would send the stream's next request on it.
        session_cm: Any = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=3600),
        )
    elif client_kind == "sdk":
        import vibesdk
        from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

        flag = make_flag("vibethinker", canary_url=urls, rollout_bps=10_000)
        source = InMemoryFlagSource(make_document(flag))
        session_cm = vibesdk.AsyncClient(flag_source=source)
    elif client_kind == "httpx":
        import httpx

        session_cm = httpx.AsyncClient(
            timeout=3600, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
        )
    else:
        raise SystemExit(f"unknown client {client_kind}")

    async with session_cm as session:
        # Every worker makes its client first and then waits for the common start: a client that
        # takes longer to make (the SDK's: ~30 ms on a 2-core machine, 8 workers at once on a GPU
        # host) must not start its streams later than the others on the round's clock. An app
        # makes its client once.
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def one_stream(s: int) -> None:
            url = urls[s % len(urls)] + _path(cfg["endpoint"])
            for r in range(cfg["requests_per_stream"]):
                n = stream_tokens(cfg["n_predict"], cfg["lengths"], s)
                body = _body(cfg["endpoint"], s * 1000 + r, n, cfg["server"], cfg["sampling"])
                t_start = time.time()
                t0 = time.perf_counter()
                try:
                    if client_kind == "sdk":
                        ttft, tokens = await _sdk_stream(session, s, body)
                    elif client_kind == "aiohttp":
                        ttft, tokens = await _aiohttp_stream(session, url, body)
                    else:
                        ttft, tokens = await _httpx_stream(session, url, body)
                    results.append(
                        RequestResult(s, t_start, ttft, time.perf_counter() - t0, tokens)
                    )
                except Exception as exc:  # recorded, not raised: one failure must not hide the rest
                    results.append(
                        RequestResult(
                            s, t_start, None, time.perf_counter() - t0, 0, repr(exc)[:300]
                        )
                    )

        await asyncio.gather(*(one_stream(s) for s in streams))
    return results


def _worker(cfg: dict[str, Any], streams: list[int], start_at: float, queue: Any) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    res = asyncio.run(_worker_async(cfg, streams, start_at))
    queue.put([asdict(r) for r in res])


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def summarize(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None]
    tokens = sum(r["tokens"] for r in ok)
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    e2es = [r["e2e"] for r in ok]
    per_stream = [
        r["tokens"] / (r["e2e"] - r["ttft"])
        for r in ok
        if r["ttft"] is not None and r["e2e"] > r["ttft"]
    ]
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "first_error": next((r["error"] for r in results if r["error"]), None),
        "tokens": tokens,
        "mean_tokens_per_request": tokens / len(ok) if ok else 0,
        "wall_s": wall,
        "total_tps": tokens / wall if wall > 0 else 0.0,
        "per_stream_tps_p50": statistics.median(per_stream) if per_stream else None,
        "ttft_p50_s": pct(ttfts, 0.5),
        "ttft_p95_s": pct(ttfts, 0.95),
        "e2e_p50_s": pct(e2es, 0.5),
        "e2e_p95_s": pct(e2es, 0.95),
    }


def run_load(
    urls: list[str],
    *,
    concurrency: int,
    n_predict: int,
    requests_per_stream: int = 1,
    client: str = "aiohttp",
    endpoint: str = "completions",
    server: str = "llama-server",
    sampling: dict[str, Any] | None = None,
    processes: int | None = None,
    lengths: str = "equal",
) -> dict[str, Any]:
    """Run the load; return :func:`summarize`'s summary, the raw requests under ``raw``."""
    stream_tokens(n_predict, lengths, 0)  # a bad name fails here, not in every worker
    cfg = {
        "urls": urls,
        "n_predict": n_predict,
        "lengths": lengths,
        "requests_per_stream": requests_per_stream,
        "client": client,
        "endpoint": endpoint,
        "server": server,
        "sampling": sampling or {},
    }
    nproc = processes or max(1, min(concurrency, (os.cpu_count() or 2) // 2, 8))
    groups = [list(range(concurrency))[i::nproc] for i in range(nproc)]
    groups = [g for g in groups if g]
    # Import the client library before forking, so no worker spends its head start importing.
    # (In the 2026-11-28 runs one 16-stream cell started one request ~2 s before the others; a
    # skewed start counts against the wall-clock total, not against per-request latencies.)
    if client == "aiohttp":
        import aiohttp  # noqa: F401
    elif client == "sdk":
        import vibesdk.testing  # noqa: F401
    else:
        import httpx  # noqa: F401
    if client != "aiohttp" and os.environ.get("LOADGEN_PREIMPORT_ANYIO", "1") != "0":
        # httpx's connection pool imports anyio's asyncio backend (and sniffio) on a process's
        # first request: ~20 ms with the event loop blocked, on this benchmark's clock for every
        # stream of a fresh worker, where aiohttp has imported all it needs. (An app's
        # process pays it once.) LOADGEN_PREIMPORT_ANYIO=0 leaves it there, to measure it.
        import anyio._backends._asyncio  # noqa: F401
        import sniffio  # noqa: F401
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.3 + 0.05 * len(groups)
    procs = [ctx.Process(target=_worker, args=(cfg, g, start_at, queue)) for g in groups]
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    for _ in procs:
        results.extend(queue.get())
    for p in procs:
        p.join()
    first = min(r["start"] for r in results)
    last = max(r["start"] + r["e2e"] for r in results)
    summary = summarize(results, last - first)
    summary.update(
        {"concurrency": concurrency, "n_predict": n_predict, "client": client, "endpoint": endpoint}
    )
    if lengths != "equal":
        summary["lengths"] = lengths
    summary["raw"] = results
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url", action="append", required=True, help="base URL ending in /v1 (repeatable)"
    )
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--n-predict", type=int, default=256)
    ap.add_argument("--requests-per-stream", type=int, default=1)
    ap.add_argument("--client", default="aiohttp", choices=["aiohttp", "httpx", "sdk"])
    ap.add_argument("--endpoint", default="completions", choices=["completions", "chat"])
    ap.add_argument("--server", default="llama-server", choices=["llama-server", "openai", "plain"])
    ap.add_argument(
        "--processes", type=int, help="worker processes (default: up to 8, half the CPUs)"
    )
    ap.add_argument("--lengths", default="equal", choices=LENGTHS)
    args = ap.parse_args()
    out = run_load(
        args.url,
        concurrency=args.concurrency,
        n_predict=args.n_predict,
        requests_per_stream=args.requests_per_stream,
        client=args.client,
        endpoint=args.endpoint,
        server=args.server,
        processes=args.processes,
        lengths=args.lengths,
    )
    out.pop("raw")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
