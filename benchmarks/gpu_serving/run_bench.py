"""Run a benchmark plan: start each server configuration, drive the load cells, append results.

Every finished cell is appended at once to ``OUT/results.jsonl`` (so a run cut off by a time limit
keeps what it measured) and printed as one table row. Servers are started through
``vibesdk_server.serving`` (the same launcher ops use), llama-cpp-python's server as a subprocess,
transformers in-process.

    python run_bench.py --plan sweep --models DIR --out DIR [--deadline-s 540]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from vibesdk_server.serving import PROFILES, ServerProfile, free_port, mps_running, serve

T0 = time.monotonic()
Cell = tuple[int, ...]  # (concurrency, n_predict[, requests per stream])
FULL: list[Cell] = [(c, n) for n in (256, 1024) for c in (1, 4, 16, 32, 64)] + [(16, 512)]
SWEEP: list[Cell] = [(1, 256), (16, 256), (64, 256)]

TUNED = PROFILES["h100-vibethinker-topk"]
TUNED_MPS = PROFILES["h100-vibethinker-mps-topk"]
DEFAULT = PROFILES["default"]


def variants() -> dict[str, ServerProfile]:
    """Flag variants measured by the sweep, each a profile derived from the tuned one."""
    t = TUNED
    return {
        "default": DEFAULT,
        "tuned": t,
        "tuned-cpu-sampling": replace(t, name="tuned-cpu-sampling", backend_sampling=False),
        "tuned-no-kvu": replace(
            t, name="tuned-no-kvu", kv_unified=False, ctx_per_slot=4096, kv_pool_tokens=None
        ),
        "tuned-topk0": replace(t, name="tuned-topk0", sampling=replace(t.sampling, top_k=0)),
        "default+bs": replace(DEFAULT, name="default+bs", backend_sampling=True),
        "tuned-topk40-default-order": replace(
            t,
            name="tuned-topk40-default-order",
            sampling=replace(t.sampling, top_k=40, samplers=None),
        ),
        "tuned-np32x2": replace(
            t, name="tuned-np32x2", instances=2, parallel=32, kv_pool_tokens=131072
        ),
        "tuned-np128": replace(t, name="tuned-np128", parallel=128, kv_pool_tokens=262144),
        # second round, around the no-kvu winner of the first
        "tuned-kvu": replace(
            t, name="tuned-kvu", kv_unified=True, ctx_per_slot=40960, kv_pool_tokens=262144
        ),
        "tuned-greedy": replace(
            t, name="tuned-greedy", sampling=replace(t.sampling, temperature=0.0)
        ),
        "tuned-2x32": replace(t, name="tuned-2x32", instances=2, parallel=32),
        "tuned-4x16": replace(t, name="tuned-4x16", instances=4, parallel=16),
        "tuned-40k-q8kv": replace(
            t, name="tuned-40k-q8kv", ctx_per_slot=40960, kv_cache_type="q8_0"
        ),
        # session 2: the host-RAM prompt cache off, then several servers on the GPU (with and
        # without the MPS daemon, which lets their kernels run at the same time)
        "tuned-cache8g": replace(t, name="tuned-cache8g", cache_ram_mib=8192),
        "tuned-ram0": replace(t, name="tuned-ram0", cache_ram_mib=0),
        **{
            f"ram0-{n}x{64 // n}": replace(
                t, name=f"ram0-{n}x{64 // n}", cache_ram_mib=0, instances=n, parallel=64 // n
            )
            for n in (2, 4, 8, 16)
        },
        # the same servers on the Q4_K_M model (the plans pass the model file)
        "ram0-q4": replace(t, name="ram0-q4", cache_ram_mib=0),
        "ram0-q4-8x8": replace(t, name="ram0-q4-8x8", cache_ram_mib=0, instances=8, parallel=8),
        # with VARIANT_ENV's GGML_CUDA_GRAPH_OPT=1
        "ram0-graph-opt": replace(t, name="ram0-graph-opt", cache_ram_mib=0),
    }


def unpack(cell: Cell) -> tuple[int, int, int]:
    """(concurrency, n_predict, requests per stream) of a cell; one request unless it says."""
    return cell[0], cell[1], cell[2] if len(cell) > 2 else 1


# Environment for a variant's servers (ggml's switches are environment variables).
VARIANT_ENV: dict[str, dict[str, str]] = {"ram0-graph-opt": {"GGML_CUDA_GRAPH_OPT": "1"}}


class Recorder:
    def __init__(self, out: Path, deadline_s: float) -> None:
        self.path = out / "results.jsonl"
        self.deadline_s = deadline_s

    def time_left(self) -> float:
        return self.deadline_s - (time.monotonic() - T0)

    def write(self, row: dict[str, Any]) -> None:
        row = {**row, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        print(
            f"{row['config']:28} {row.get('client', ''):8} "
            f"c={row['concurrency']:<3} n={row['n_predict']:<5}"
            f" total={fmt(row.get('total_tps'))} stream={fmt(row.get('per_stream_tps_p50'))}"
            f" ttft50={fmt(row.get('ttft_p50_s'))} ttft95={fmt(row.get('ttft_p95_s'))}"
            f" e2e50={fmt(row.get('e2e_p50_s'))} e2e95={fmt(row.get('e2e_p95_s'))}"
            f" err={row.get('errors', '')} {row.get('note', '')}",
            flush=True,
        )


def run_cells(
    rec: Recorder,
    config: str,
    urls: list[str],
    cells: list[Cell],
    *,
    est_tps: Callable[[int], float],
    meta: dict[str, Any],
    **load_kw: Any,
) -> None:
    for cell in cells:
        c, n, rps = unpack(cell)
        # Skip a cell that would not finish in the time left (estimate from the last measurement).
        expected = rps * c * n / max(est_tps(c), 1.0) + 3
        if expected > rec.time_left() - 20:
            rec.write(
                {
                    "config": config,
                    "concurrency": c,
                    "n_predict": n,
                    "note": f"skipped: ~{expected:.0f} s left {rec.time_left():.0f} s",
                    **meta,
                }
            )
            continue
        res = loadgen.run_load(urls, concurrency=c, n_predict=n, requests_per_stream=rps, **load_kw)
        res["requests_per_stream"] = rps
        raw = res.pop("raw")
        res["raw_e2e"] = sorted(round(r["e2e"], 4) for r in raw)
        rec.write({"config": config, **meta, **res})
        last[config] = res


last: dict[str, dict[str, Any]] = {}


def estimator(config: str, single: float, total: float) -> Callable[[int], float]:
    def est(c: int) -> float:
        prev = last.get(config)
        if prev and prev.get("total_tps"):
            return max(prev["total_tps"], single if c == 1 else prev["total_tps"])
        return single if c == 1 else total

    return est


def bench_llama_server(
    rec: Recorder,
    name: str,
    profile: ServerProfile,
    model: Path,
    cells: list[Cell],
    out: Path,
    **load_kw: Any,
) -> None:
    if rec.time_left() < 40:
        rec.write({"config": name, "concurrency": 0, "n_predict": 0, "note": "skipped: no time"})
        return
    t0 = time.monotonic()
    env = VARIANT_ENV.get(name, {})
    try:
        group = serve(
            model, profile, log_dir=out / name.replace("+", "_"), ready_timeout_s=240, env=env
        )
    except Exception as exc:
        rec.write(
            {
                "config": name,
                "concurrency": 0,
                "n_predict": 0,
                "note": f"start failed: {exc!s:.500}",
            }
        )
        return
    mps = mps_running()
    with group:
        if mps:
            # MPS clients show as type M+C in nvidia-smi: the record that MPS was in use
            with (out / f"{name}-nvidia-smi.txt").open("w") as f:
                subprocess.run(["nvidia-smi"], stdout=f, stderr=subprocess.STDOUT, check=False)
        meta = {
            "server": "llama-server",
            "startup_s": round(time.monotonic() - t0, 2),
            "command": group.servers[0].command[1:],
            "instances": len(group.servers),
            "env": env,
            "mps": mps,
        }
        run_cells(
            rec, name, group.urls, cells, est_tps=estimator(name, 300, 1000), meta=meta, **load_kw
        )


def bench_llama_cpp_python(rec: Recorder, model: Path, cells: list[Cell], out: Path) -> None:
    port = free_port()
    log = out / "llama-cpp-python.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_gpu_layers",
        "-1",
        "--n_ctx",
        "4096",
        "--flash_attn",
        "true",
        "--interrupt_requests",
        "false",
    ]
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < 120:
            if proc.poll() is not None:
                rec.write(
                    {
                        "config": "llama-cpp-python",
                        "concurrency": 0,
                        "n_predict": 0,
                        "note": "start failed: " + log.read_text()[-800:],
                    }
                )
                return
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        meta = {
            "server": "llama-cpp-python",
            "startup_s": round(time.monotonic() - t0, 2),
            "command": cmd[1:],
        }
        sampling = {"temperature": 0.6, "top_p": 0.95, "top_k": 64, "min_p": 0.0}
        run_cells(
            rec,
            "llama-cpp-python",
            [f"http://127.0.0.1:{port}/v1"],
            cells,
            est_tps=lambda c: 300.0,
            meta=meta,
            server="openai",
            sampling=sampling,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_transformers(rec: Recorder, cells: list[Cell]) -> None:
    """transformers generate() on a random Qwen2 of VibeThinker's shape (bf16, SDPA)."""
    try:
        import torch
        import transformers
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except Exception as exc:
        rec.write(
            {
                "config": "transformers",
                "concurrency": 0,
                "n_predict": 0,
                "note": f"unavailable: {exc!r}",
            }
        )
        return
    cfg = Qwen2Config(
        hidden_size=1536,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        intermediate_size=8960,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        rope_theta=10000.0,
    )
    t0 = time.monotonic()
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16).eval()
    meta = {
        "server": "transformers",
        "startup_s": round(time.monotonic() - t0, 2),
        "versions": f"torch {torch.__version__} transformers {transformers.__version__}",
        "client": "in-process",
        "endpoint": "generate",
    }
    gen = torch.Generator(device="cuda").manual_seed(0)
    prompt_len = 48
    for c, n in cells:
        est = {1: 30.0}.get(c, 30.0 * c * 0.8)
        if c * n / est + 5 > rec.time_left() - 20:
            rec.write(
                {
                    "config": "transformers",
                    "concurrency": c,
                    "n_predict": n,
                    **meta,
                    "note": "skipped: time",
                }
            )
            continue
        ids = torch.randint(0, 151643, (c, prompt_len), device="cuda", generator=gen)
        kw = {
            "do_sample": True,
            "temperature": 0.6,
            "top_p": 0.95,
            "top_k": 0,
            "pad_token_id": 151643,
        }
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            torch.cuda.synchronize()
            ttft = time.perf_counter() - t1
            t1 = time.perf_counter()
            outp = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
            torch.cuda.synchronize()
            e2e = time.perf_counter() - t1
        tokens = int((outp.shape[1] - prompt_len) * c)
        rec.write(
            {
                "config": "transformers",
                "concurrency": c,
                "n_predict": n,
                **meta,
                "requests": c,
                "errors": 0,
                "tokens": tokens,
                "wall_s": e2e,
                "total_tps": tokens / e2e,
                "per_stream_tps_p50": (tokens / c) / max(e2e - ttft, 1e-9),
                "ttft_p50_s": ttft,
                "ttft_p95_s": ttft,
                "e2e_p50_s": e2e,
                "e2e_p95_s": e2e,
                "note": "one batch; every sequence finishes together",
            }
        )
    del model
    torch.cuda.empty_cache()


def bench_client_overhead(
    rec: Recorder,
    model: Path,
    cells: list[Cell],
    out: Path,
    *,
    sdk_first: bool = False,
    profile: ServerProfile = TUNED,
) -> None:
    """The SDK's cost: the same chat requests to one tuned server, sent directly and through
    vibesdk.AsyncClient, cell by cell in turn (same server, same warm state)."""
    if rec.time_left() < 60:
        rec.write(
            {
                "config": "client-overhead",
                "concurrency": 0,
                "n_predict": 0,
                "note": "skipped: no time",
            }
        )
        return
    group = serve(model, profile, log_dir=out / f"client-{profile.name}", ready_timeout_s=240)
    sampling = {"temperature": 0.6, "top_p": 0.95, "top_k": 64}
    clients = [("direct-aiohttp", "aiohttp"), ("direct-httpx", "httpx")]
    if sdk_available():
        clients.append(("vibesdk-AsyncClient", "sdk"))
        if sdk_first:
            # the order matters on a server whose slots fill up: measure both ways round
            clients = [
                ("vibesdk-AsyncClient", "sdk"),
                ("direct-aiohttp", "aiohttp"),
                ("vibesdk-AsyncClient-2", "sdk"),
            ]
    else:
        rec.write(
            {
                "config": "vibesdk-AsyncClient",
                "concurrency": 0,
                "n_predict": 0,
                "note": "vibesdk.AsyncClient not importable",
            }
        )
    with group:
        for cell in cells:
            c, n, _ = unpack(cell)
            for name, client in clients:
                if c * n / 1500 + 5 > rec.time_left() - 20:
                    rec.write(
                        {"config": name, "concurrency": c, "n_predict": n, "note": "skipped: time"}
                    )
                    continue
                res = loadgen.run_load(
                    group.urls,
                    concurrency=c,
                    n_predict=n,
                    client=client,
                    endpoint="chat",
                    server="plain",
                    sampling=sampling,
                )
                raw = res.pop("raw")
                res["raw_e2e"] = sorted(round(r["e2e"], 4) for r in raw)
                rec.write({"config": name, "server": f"llama-server ({profile.name})", **res})


def sdk_available() -> bool:
    try:
        import vibesdk

        return hasattr(vibesdk, "AsyncClient")
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", required=True)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--logs", type=Path, help="server logs (default: OUT/logs)")
    ap.add_argument(
        "--deadline-s", type=float, default=float(os.environ.get("BENCH_DEADLINE_S", "540"))
    )
    ap.add_argument(
        "--only", default="", help="comma-separated config names to run (default: the plan's)"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rec = Recorder(args.out, args.deadline_s)
    logs = args.logs or args.out / "logs"
    q8 = args.models / "vt-q8_0.gguf"
    only = [s for s in args.only.split(",") if s]
    v = variants()

    if args.plan == "quick":
        for name in only or ["default", "tuned"]:
            bench_llama_server(rec, name, v[name], q8, SWEEP, logs)
    elif args.plan == "sweep":
        for name in only or list(v):
            bench_llama_server(rec, name, v[name], q8, SWEEP, logs)
    elif args.plan == "q4":
        q4 = args.models / "vt-q4_k_m.gguf"
        bench_llama_server(
            rec, "tuned-q4_k_m", replace(TUNED, name="tuned-q4_k_m"), q4, SWEEP, logs
        )
    elif args.plan == "matrix":
        names = only or ["tuned", "default", "client", "llama-cpp-python", "transformers"]
        for name in names:
            if name == "llama-cpp-python":
                bench_llama_cpp_python(rec, q8, [(1, 256), (4, 256), (16, 256), (1, 1024)], logs)
            elif name == "transformers":
                bench_transformers(
                    rec, [(1, 256), (4, 256), (16, 256), (32, 256), (64, 256), (64, 1024)]
                )
            elif name == "client":
                # The SDK's path: chat completions through httpx (vibesdk.AsyncClient if present),
                # against the direct aiohttp client on the same server, same cells.
                cells = [(1, 256), (16, 256), (64, 256), (16, 512)]
                bench_llama_server(
                    rec,
                    "tuned-chat-aiohttp",
                    TUNED,
                    q8,
                    cells,
                    logs,
                    client="aiohttp",
                    endpoint="chat",
                )
                bench_llama_server(
                    rec, "tuned-chat-httpx", TUNED, q8, cells, logs, client="httpx", endpoint="chat"
                )
            else:
                bench_llama_server(rec, name, v[name], q8, FULL, logs)
    elif args.plan == "all2":
        bench_llama_server(rec, "tuned", v["tuned"], q8, FULL, logs)
        bench_client_overhead(rec, q8, [(1, 256), (16, 256), (64, 256), (16, 512)], logs)
        bench_llama_server(
            rec,
            "default",
            v["default"],
            q8,
            [(c, 256) for c in (1, 4, 16, 32, 64)] + [(16, 512), (1, 1024), (16, 1024)],
            logs,
        )
        bench_llama_cpp_python(rec, q8, [(1, 256), (4, 256), (16, 256), (1, 1024)], logs)
        bench_transformers(rec, [(1, 256), (4, 256), (16, 256), (32, 256), (64, 256), (16, 512)])
        for name in only or ["tuned-greedy", "tuned-2x32", "tuned-40k-q8kv", "tuned-4x16"]:
            bench_llama_server(rec, name, v[name], q8, SWEEP, logs)
    elif args.plan == "final":
        # Why do long answers slow every stream down? Same load (16 streams x 1024 tokens) on fresh
        # servers that differ in one flag each.
        t = TUNED
        diag = {
            "diag-np64": t,
            "diag-np16": replace(t, name="diag-np16", parallel=16),
            "diag-np64-kvu": replace(
                t, name="diag-np64-kvu", kv_unified=True, kv_pool_tokens=262144
            ),
            "diag-np64-cpu-sampling": replace(
                t, name="diag-np64-cpu-sampling", backend_sampling=False
            ),
        }
        bench_transformers(rec, [(1, 256), (16, 256), (64, 256), (16, 512)])
        for name, prof in diag.items():
            bench_llama_server(rec, name, prof, q8, [(16, 1024)], logs)
        bench_client_overhead(rec, q8, [(16, 512), (64, 256)], logs, sdk_first=True)
    elif args.plan in ("final2", "final2-mps", "final2-tail"):
        # Session 2's final run on the patched build: the two H100 profiles across the matrix,
        # the SDK interleaved with direct on each, Q4_K_M, and llama-server's defaults.
        q4 = args.models / "vt-q4_k_m.gguf"
        if args.plan == "final2":
            bench_llama_server(rec, "tuned", TUNED, q8, FULL, logs)
            bench_client_overhead(rec, q8, [(16, 512), (64, 256)], logs, sdk_first=True)
        elif args.plan == "final2-mps":
            bench_llama_server(rec, "tuned-mps", TUNED_MPS, q8, FULL, logs)
            bench_client_overhead(
                rec, q8, [(16, 512), (64, 256)], logs, sdk_first=True, profile=TUNED_MPS
            )
            two = replace(TUNED_MPS, name="h100-vibethinker-mps-2x32", instances=2, parallel=32)
            bench_llama_server(
                rec, "tuned-mps-2x32", two, q8, [(1, 256), (16, 512), (64, 256)], logs
            )
            bench_llama_server(
                rec, "tuned-mps-2x32-q4", two, q4, [(1, 256), (16, 512), (64, 256)], logs
            )
        if args.plan == "final2-tail":
            bench_llama_server(rec, "tuned-q4", TUNED, q4, [(1, 256), (1, 1024)], logs)
            bench_llama_server(rec, "default", DEFAULT, q8, [(1, 256), (16, 512), (64, 256)], logs)
    elif args.plan == "s2e":
        # VibeThinker's longest answers (40,960 tokens) in every one of 64 slots, KV cache in q8_0
        long = v["tuned-40k-q8kv"]
        bench_llama_server(rec, "tuned-40k-q8kv", long, q8, [(16, 512), (64, 256), (1, 256)], logs)
    elif args.plan in ("s2a", "s2b", "s2c", "s2d"):
        # Session 2 (issue 5, second GPU session). s2a: does the host-RAM prompt cache explain the
        # slowdown of a server that has served before (same cells on one server, twice, with and
        # without it; the last cell sends 3 requests per stream, so requests arrive while others
        # decode, as in production); then several servers time-sliced, Q4_K_M, GGML_CUDA_GRAPH_OPT.
        # s2b (run_gpu.sh starts the MPS daemon first): several servers whose kernels overlap.
        slow: list[Cell] = [(16, 512), (64, 256), (16, 512), (4, 1024), (16, 512, 3)]
        multi: list[Cell] = [(1, 256), (16, 512), (64, 256), (16, 512, 3)]
        q4 = args.models / "vt-q4_k_m.gguf"
        plan: list[tuple[str, Path, list[Cell]]]
        steady: list[Cell] = [(16, 512), (64, 256), (16, 512), (16, 512, 3), (64, 256, 3)]
        if args.plan == "s2c":
            # the patched build (server/llama/patches: busy slots packed), one server
            plan = [("tuned-ram0", q8, steady)]
        elif args.plan == "s2d":
            # the patched build, several servers under MPS
            plan = [("ram0-4x16", q8, steady[1:]), ("ram0-2x32", q8, steady[1:])]
        elif args.plan == "s2a":
            plan = [
                ("tuned-cache8g", q8, slow),
                ("tuned-ram0", q8, slow),
                ("ram0-4x16", q8, multi),
                ("ram0-graph-opt", q8, [(1, 256), (16, 512)]),
                ("ram0-q4", q4, multi),
            ]
        else:
            plan = [
                ("ram0-4x16", q8, multi),
                ("ram0-8x8", q8, multi),
                ("ram0-16x4", q8, multi),
                ("ram0-2x32", q8, multi),
                ("tuned-ram0", q8, multi),
                ("ram0-q4-8x8", q4, multi),
            ]
        for name, model, cells in plan:
            if only and name not in only:
                continue
            tag = name + ("-mps" if mps_running() else "")
            bench_llama_server(rec, tag, v[name], model, cells, logs)
    else:
        raise SystemExit(f"unknown plan {args.plan}")


if __name__ == "__main__":
    main()
