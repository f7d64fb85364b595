"""Run a benchmark plan: start each server configuration, drive the load cells, append results.

Every finished cell is appended at once to ``OUT/results.jsonl`` (so a run cut off by a time limit
keeps what it measured) and printed as one table row; a cell that would not finish before the
deadline is recorded as skipped. Each llama-server step first runs a warm-up cell on its fresh
servers, recorded with ``"warmup": true`` and left out of every figure (``--no-warmup``: none).
Every row carries the GPU, the llama.cpp build (its ``.built-*`` stamp), the git commit, and for
llama-server the model file, whether MPS ran, the sampling and ``LLAMA_BATCHED_SAMPLING`` of its
servers and their command line. Servers are started through
``vibesdk_server.serving`` (the same launcher ops use), llama-cpp-python's server as a
subprocess, transformers in-process. The plans are in plans.py, the configuration names in
configs.py.

    python run_bench.py --plan headline --list                  # what would run, no GPU needed
    python run_bench.py --plan headline --models DIR --out DIR [--deadline-s 540]
        [--only h100-vibethinker,h100-vibethinker+stock-sampling] [--cells 64x256,16x512]
        [--model f16] [--no-warmup]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
import plans
from configs import Config, UnknownConfigError
from plans import Cell, Step, unpack
from vibesdk_server.serving import (
    ServerGroup,
    ServerProfile,
    find_llama_server,
    free_port,
    mps_running,
    serve,
)
from vibesdk_server.serving import gpu_name as serving_gpu_name

from vibesdk import ConfigError

T0 = time.monotonic()
MARGIN_S = 20.0  # a cell runs only if it is expected to end this long before the deadline
REPO = Path(__file__).resolve().parents[2]


# ---- what every row records -------------------------------------------------------------------


def gpu_name() -> str | None:
    """The first GPU's name (the launcher's ``gpu_name``), None without one."""
    try:
        return serving_gpu_name()
    except ConfigError:
        return None


def git_commit() -> str:
    """The commit the run measures: the one written to .gpu/commit before a GPU call (README:
    "Carrying inputs") when it is there -- the GPU machine's copy of the tree may carry a .git
    of another commit --, else this checkout's (``-dirty`` with uncommitted changes)."""
    carried = REPO / ".gpu" / "commit"
    if carried.is_file():
        return carried.read_text().strip() + " (from .gpu/commit)"
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    return "unknown"


def llama_build() -> dict[str, Any]:
    """The build's stamp (``.built-VERSION-FLAVOUR-PATCHESID`` under its prefix, from
    server/llama/build.sh) and, when PATCHESID is that of server/llama/patches here, their names."""
    try:
        binary = Path(os.environ.get("VIBESDK_LLAMA_SERVER") or find_llama_server())
    except Exception:  # no build here: --list, or a CPU machine without one
        return {"llama_build": "unknown (no llama-server found)", "llama_patches": None}
    stamps = sorted(binary.resolve().parent.parent.glob(".built-*"))
    if not stamps:
        return {
            "llama_build": f"unknown (no .built-* stamp beside {binary})",
            "llama_patches": None,
        }
    stamp = stamps[-1].name
    patches = sorted((REPO / "server" / "llama" / "patches").glob("*.patch"))
    # the stamp's id covers the patches and tools/; build.sh is the one place that computes it
    tree_id = subprocess.run(
        ["bash", str(REPO / "server" / "llama" / "build.sh"), "--print-id"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    known_patches = [p.name for p in patches] if stamp.endswith(f"-{tree_id}") else None
    return {"llama_build": stamp, "llama_patches": known_patches}


def sampling_path(batched_env: str | None, patches: list[str] | None) -> str:
    """How the servers sample: "stock" under LLAMA_BATCHED_SAMPLING=0 or on a build whose known
    patches hold none about sampling, else "batched" (or "unknown" when the build's patches are
    not the tree's). What each cell's steps really took is its row's ``sampling_steps``."""
    if batched_env == "0":
        return "stock"
    if patches is None:
        return "unknown (the build's patches are not this tree's)"
    if not any("sampl" in p for p in patches):
        return "stock (the build has no batched-sampling patch)"
    return "batched"


class Recorder:
    def __init__(self, out: Path, deadline_s: float, facts: dict[str, Any]) -> None:
        self.path = out / "results.jsonl"
        self.deadline_s = deadline_s
        self.facts = facts
        # (config name, model file) -> (concurrency, tokens/s in total) of its last measured cell
        self.measured: dict[tuple[str, str], tuple[int, float]] = {}

    def time_left(self) -> float:
        return self.deadline_s - (time.monotonic() - T0)

    def expected_s(
        self,
        name: str,
        prof: ServerProfile | None,
        cell: Cell,
        model: str = "q8_0",
        stock: bool = False,
    ) -> float:
        """A cell's seconds: the prior of plans.py, scaled by what this config measured so far on
        the same model file (warm-up cells are no measurement)."""
        seen = self.measured.get((name, model))
        if prof is None or seen is None:
            return plans.cell_seconds(prof, cell, model=model, stock=stock)
        prior = lambda c: plans.prior_tps(prof, c, model, stock)  # noqa: E731
        return plans.cell_seconds(prof, cell, prior(cell[0]) * seen[1] / prior(seen[0]))

    def fits(self, expected_s: float) -> bool:
        return expected_s <= self.time_left() - MARGIN_S

    def skip(self, config: str, cell: Cell | None, note: str, **meta: Any) -> None:
        c, n, _ = unpack(cell) if cell else (0, 0, 1)
        self.write({"config": config, "concurrency": c, "n_predict": n, **meta, "note": note})

    def write(self, row: dict[str, Any]) -> None:
        row = {**row, **self.facts, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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


class Mps:
    """The CUDA MPS control daemon, started for the steps that want it and stopped after them.

    A daemon this run did not start (run_gpu.sh's mps-on stage) is left running.
    """

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started = False

    def want(self, on: bool | None) -> bool:
        """Start or stop the daemon as the step asks; whether it runs now."""
        if on and not mps_running():
            try:
                subprocess.run(["nvidia-cuda-mps-control", "-d"], check=False, timeout=30)
                self.started = self._wait(running=True)
                print(f"MPS control daemon {'started' if self.started else 'did not start'}")
            except (OSError, subprocess.TimeoutExpired) as exc:
                print(f"MPS control daemon did not start: {exc}", flush=True)
        elif on is False and self.started:
            self.stop()
        return mps_running()

    def stop(self) -> None:
        if not self.started:
            return
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, check=False)
        self._wait(running=False)
        self.started = False
        print("MPS control daemon stopped", flush=True)
        if Path("/var/log/nvidia-mps").is_dir():
            shutil.copytree("/var/log/nvidia-mps", self.logs / "mps", dirs_exist_ok=True)

    @staticmethod
    def _wait(*, running: bool) -> bool:
        for _ in range(50):
            if mps_running() == running:
                break
            time.sleep(0.2)
        return mps_running()


# ---- running steps ----------------------------------------------------------------------------


def run_cells(
    rec: Recorder,
    name: str,
    prof: ServerProfile | None,
    urls: list[str],
    cells: tuple[Cell, ...],
    meta: dict[str, Any],
    group: ServerGroup | None = None,
    *,
    model: str = "q8_0",
    stock: bool = False,
    warmup: Cell | None = None,
    **load_kw: Any,
) -> None:
    """Each cell in turn, after ``warmup`` (when given): a cell whose row says ``"warmup":
    true`` and that nothing takes for a measurement; every other row says false."""
    todo = ([(warmup, True)] if warmup is not None else []) + [(c, False) for c in cells]
    for cell, is_warmup in todo:
        c, n, rps = unpack(cell)
        row_meta = {**meta, "warmup": is_warmup}
        expected = rec.expected_s(name, prof, cell, model, stock)
        if not rec.fits(expected):
            left = f"{rec.time_left():.0f} s left"
            rec.skip(name, cell, f"skipped: ~{expected:.0f} s, {left}", **row_meta)
            continue
        before = group.sampling_steps() if group is not None else None
        res = loadgen.run_load(urls, concurrency=c, n_predict=n, requests_per_stream=rps, **load_kw)
        after = group.sampling_steps() if group is not None and before is not None else None
        # which path the cell's decode steps took, counted by the servers (None: not counted)
        res["sampling_steps"] = (
            None if before is None or after is None else {k: after[k] - before[k] for k in after}
        )
        res["requests_per_stream"] = rps
        raw = res.pop("raw")
        res["raw_e2e"] = sorted(round(r["e2e"], 4) for r in raw)
        if is_warmup:
            res["note"] = "warm-up: not a measurement"
        rec.write({"config": name, **row_meta, **res})
        if res.get("total_tps") and not is_warmup:
            rec.measured[name, model] = (c, res["total_tps"])


def run_clients(rec: Recorder, step: Step, urls: list[str], meta: dict[str, Any]) -> None:
    """The same chat requests sent by each client in turn, ``step.rounds`` times per cell."""
    assert step.config is not None
    prof = step.config.profile
    clients = list(step.clients)
    if any(kind == "sdk" for _, kind in clients) and not sdk_available():
        rec.skip("vibesdk-AsyncClient", None, "vibesdk.AsyncClient not importable")
        clients = [(name, kind) for name, kind in clients if kind != "sdk"]
    # the sampling the servers apply by default, sent explicitly by both sides
    sampling = prof.sampling.request_params()
    for cell in step.client_cells:
        c, n, _ = unpack(cell)
        totals: dict[str, float] = {}  # tokens/s summed over the rounds, per client
        for r in range(1, step.rounds + 1):
            for name, kind in clients:
                expected = rec.expected_s(
                    step.name, prof, cell, step.model, step.config.stock_sampling
                )
                if not rec.fits(expected):
                    rec.skip(name, cell, "skipped: time", round=r, **meta)
                    continue
                res = loadgen.run_load(
                    urls,
                    concurrency=c,
                    n_predict=n,
                    client=kind,
                    endpoint="chat",
                    server="plain",
                    sampling=sampling,
                )
                raw = res.pop("raw")
                res["raw_e2e"] = sorted(round(x["e2e"], 4) for x in raw)
                # each request's time to first token: how far apart the clients' streams start
                res["raw_ttft"] = sorted(round(x["ttft"], 4) for x in raw if x["ttft"] is not None)
                rec.write({"config": name, **meta, "group": step.name, "round": r, **res})
                totals[name] = totals.get(name, 0.0) + (res["total_tps"] or 0.0)
        names = list(totals)  # each client against the first (direct aiohttp), if it ran
        if len(names) > 1 and totals[names[0]]:
            for name in names[1:]:
                ratio = totals[name] / totals[names[0]]
                print(f"{name} / {names[0]} at {c}x{n}, sums of the rounds: {ratio:.1%}")


def bench_llama_server(rec: Recorder, step: Step, models: Path, logs: Path, mps: Mps) -> None:
    assert step.config is not None
    config: Config = step.config
    if rec.time_left() < 40:
        rec.skip(step.name, None, "skipped: no time")
        return
    running = mps.want(step.mps)
    if step.mps and not running:
        rec.skip(step.name, None, "skipped: needs the CUDA MPS daemon, which did not start")
        return
    if step.mps is False and running:
        print(f"{step.name}: an MPS daemon started outside this run is running", flush=True)
    name = step.name + ("-mps" if step.mps_tag and running else "")
    env = dict(config.env)
    model = models / f"vt-{step.model}.gguf"
    t0 = time.monotonic()
    try:
        group = serve(
            model,
            config.profile,
            log_dir=logs / f"{name.replace('+', '_')}-{step.model}",
            ready_timeout_s=240,
            env=env,
        )
    except Exception as exc:
        rec.skip(name, None, f"start failed: {exc!s:.500}")
        return
    with group:
        if running:
            # MPS clients show as type M+C in nvidia-smi: the record that MPS was in use
            with (logs / f"{name}-{step.model}-nvidia-smi.txt").open("w") as f:
                subprocess.run(["nvidia-smi"], stdout=f, stderr=subprocess.STDOUT, check=False)
        batched_env = env.get("LLAMA_BATCHED_SAMPLING", os.environ.get("LLAMA_BATCHED_SAMPLING"))
        sampling = config.profile.sampling
        meta = {
            "server": "llama-server",
            "profile": config.profile.name,
            "model": model.name,
            "startup_s": round(time.monotonic() - t0, 2),
            "command": group.servers[0].command[1:],
            "instances": len(group.servers),
            "env": env,
            # what the profile sets unless the environment does, and what the servers ran with
            "profile_env": dict(config.profile.env),
            "GGML_CUDA_SAMPLE_ROWS_TEAM": config.profile.environment(os.environ, env).get(
                "GGML_CUDA_SAMPLE_ROWS_TEAM"
            ),
            "mps": running,
            "sampling": {**sampling.request_params(), "samplers": sampling.samplers},
            "LLAMA_BATCHED_SAMPLING": batched_env,
            "sampling_path": sampling_path(batched_env, rec.facts["llama_patches"]),
            "warmup": False,  # run_cells marks its warm-up row
        }
        run_cells(
            rec,
            name,
            config.profile,
            group.urls,
            step.cells,
            meta,
            group,
            model=step.model,
            stock=config.stock_sampling,
            warmup=step.warmup,
            **step.load,
        )
        if step.clients:
            run_clients(rec, step, group.urls, meta)


def bench_llama_cpp_python(rec: Recorder, model: Path, cells: tuple[Cell, ...], out: Path) -> None:
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
        run_cells(  # no llama-server profile: plans.cell_seconds' prior for this server
            rec,
            "llama-cpp-python",
            None,
            [f"http://127.0.0.1:{port}/v1"],
            cells,
            meta,
            server="openai",
            sampling=sampling,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def bench_transformers(rec: Recorder, cells: tuple[Cell, ...]) -> None:
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


def sdk_available() -> bool:
    try:
        import vibesdk

        return hasattr(vibesdk, "AsyncClient")
    except Exception:
        return False


def run_step(rec: Recorder, step: Step, models: Path, logs: Path, mps: Mps) -> None:
    if step.kind == "llama-server":
        bench_llama_server(rec, step, models, logs, mps)
        return
    mps.want(step.mps)
    if step.kind == "llama-cpp-python":
        bench_llama_cpp_python(rec, models / f"vt-{step.model}.gguf", step.cells, logs)
    elif step.kind == "transformers":
        bench_transformers(rec, step.cells)


def print_plan(plan: str, steps: list[Step], family: str, gpu: str | None, deadline: float) -> None:
    """The steps, each with its seconds and when it would end, and whether the answer table's
    steps fit a fresh machine's GPU_BUDGET_S after the build."""
    seconds = [plans.step_seconds(s) for s in steps]
    print(
        f"plan {plan}: {len(steps)} configs, ~{sum(seconds):.0f} s of cells and server starts "
        f"(estimated from the H100 runs), deadline {deadline:.0f} s after start; "
        f"profiles {family}-* (GPU: {gpu or 'none found'}); "
        f"model files: {' '.join(plans.model_files(steps)) or '-'}"
    )
    done = 0.0
    for i, (step, secs) in enumerate(zip(steps, seconds, strict=True), 1):
        if step.extra and (i == 1 or not steps[i - 2].extra):
            print("    beyond the answer table (the deadline drops these first):")
        done += secs
        print(f"{i:2}  {plans.describe(step)}, ends ~{done:.0f} s")
    table = [s for s in steps if not s.extra]
    if table and len(table) < len(steps):
        setup, budget = plans.setup_seconds(steps), float(os.environ.get("GPU_BUDGET_S", "570"))
        ends = setup + sum(seconds[: len(table)])
        print(
            f"steps 1-{len(table)} (the answer table): ~{sum(seconds[: len(table)]):.0f} s; "
            f"after a fresh machine's setup (~{setup:.0f} s: build, then quantizing "
            f"{' and '.join(plans.quantized_files(steps))}) "
            f"they end ~{ends:.0f} s after the start, "
            f"{'within' if ends <= budget - MARGIN_S else 'PAST'} GPU_BUDGET_S {budget:.0f} "
            f"less the {MARGIN_S:.0f} s a cell leaves before the deadline"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Config names: profiles of vibesdk_server.serving.PROFILES (h100-vibethinker, ...) "
        "or variants of runs 1-7 (tuned, ram0-4x16, ...); NAME+stock-sampling runs NAME's "
        "servers with LLAMA_BATCHED_SAMPLING=0.",
    )
    ap.add_argument("--plan", required=True, choices=list(plans.PLANS))
    ap.add_argument("--list", action="store_true", help="print the plan's steps and cells, exit")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated config names: a profile (h100-vibethinker-mps), NAME+stock-sampling, "
        "or a variant of runs 1-7 (tuned); see plans.py for how each plan uses them",
    )
    ap.add_argument(
        "--cells",
        default="",
        help="replace every step's cells: 64x256,16x512 (x3: requests/stream)",
    )
    ap.add_argument(
        "--gpu",
        choices=["auto", "h100", "h200"],
        default="auto",
        help="which profiles headline uses (auto: h200-* when nvidia-smi names an H200)",
    )
    ap.add_argument(
        "--models", type=Path, help="the directory with the model files (--list names them)"
    )
    ap.add_argument(
        "--model",
        choices=plans.MODELS,
        help="run every llama-server step on this model file instead of the plan's own "
        "(run_gpu.sh writes the files --list names)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds of each client in the steps that compare clients (the SDK "
        "against direct; headline: 3): more rounds narrow a host's round-to-round spread",
    )
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="measure each step's first cell on its fresh servers (by default a warm-up cell, "
        "recorded with warmup: true, runs first)",
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument("--logs", type=Path, help="server logs (default: OUT/logs)")
    ap.add_argument(
        "--deadline-s", type=float, default=float(os.environ.get("BENCH_DEADLINE_S", "540"))
    )
    args = ap.parse_args(argv)
    gpu = gpu_name()
    family = plans.gpu_family(gpu) if args.gpu == "auto" else args.gpu
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    try:
        cells = plans.parse_cells(args.cells)
        steps = plans.build(
            args.plan,
            family,
            only,
            cells,
            args.model,
            warmup=not args.no_warmup,
            rounds=args.rounds,
        )
    except (UnknownConfigError, ValueError) as exc:
        print(f"run_bench.py --plan {args.plan}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print_plan(args.plan, steps, family, gpu, args.deadline_s)
    if args.list:
        return
    if args.models is None or args.out is None:
        ap.error("--models and --out are needed to run a plan (--list needs neither)")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.logs or args.out / "logs"
    facts = {"gpu": gpu, "git_commit": git_commit(), **llama_build()}
    print(json.dumps(facts), flush=True)
    rec = Recorder(args.out, args.deadline_s, facts)
    mps = Mps(logs)
    try:
        for step in steps:
            run_step(rec, step, args.models, logs, mps)
    finally:
        mps.stop()


if __name__ == "__main__":
    main()
