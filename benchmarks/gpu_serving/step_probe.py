"""Where a served decode step's time goes: llama-server with step_probe.so preloaded.

    python step_probe.py run --models DIR --out DIR --probe step_probe.so [--deadline-s 300]
    python step_probe.py stacks FILE.stacks          # symbolize a stack sample (needs nm)

``run`` starts one llama-server per variant below (the GPU's VibeThinker profile, changed one
setting at a time), drives the load cells through loadgen.py, and for each cell prints tokens/s,
the step as the client sees it (1000 / median per-stream tokens/s) and the probe's split of the
server's steps with that many busy slots: graph build, kernel launches, waiting for the GPU,
reading the sampled tokens, and the server's own work until the next step. GPU utilization
(nvidia-smi, every 100 ms) is averaged over each cell. One variant also samples the server's
main thread's stack (``STEP_PROBE_HZ``); ``stacks`` turns those samples into the functions the
time was spent in. Rows go to OUT/steps.jsonl, the symbolized profile to OUT/stacks.txt.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from vibesdk_server.serving import PROFILES, ServerProfile, gpu_name, profile_for_gpu, serve

T0 = time.monotonic()
PHASES = {
    0: "server",
    1: "graph build",
    2: "kernel launch",
    3: "GPU wait",
    4: "sampled token",
    5: "idle",
}


@dataclass(frozen=True)
class Variant:
    name: str
    changes: dict[str, Any] = field(default_factory=dict)  # ServerProfile fields
    cells: tuple[tuple[int, int], ...] = ((64, 256),)
    sampling: dict[str, Any] | None = None  # request parameters; None: the server's defaults
    env: dict[str, str] = field(default_factory=dict)
    topk: bool = False
    stacks_hz: float = 0.0


VARIANTS = [
    Variant("profile", cells=((64, 256), (32, 256), (16, 256))),
    Variant("profile, stack samples", stacks_hz=1000.0, cells=((64, 256),)),
    Variant("topk profile", topk=True, cells=((64, 256), (16, 256))),
    Variant("greedy requests", sampling={"temperature": 0.0}),
    Variant("ctx 2048 per slot", changes={"ctx_per_slot": 2048}),
    Variant("threads 8", changes={"threads": 8}),
    Variant("batch 512, ubatch 128", changes={"batch": 512, "ubatch": 128}),
    Variant("no cont-batching", changes={"extra_args": ("--no-cont-batching",)}),
    Variant("stock sampling", env={"LLAMA_BATCHED_SAMPLING": "0"}, cells=((16, 256),)),
    # session 7: patch 0003's hand-off against the stock one (same build), and what is left
    Variant(
        "stock hand-off",
        env={"LLAMA_TASK_WAKEUP": "0"},
        cells=((64, 256), (32, 256), (16, 256)),
    ),
    Variant("topk profile, stock hand-off", topk=True, env={"LLAMA_TASK_WAKEUP": "0"}),
    Variant("threads 8, stock hand-off", changes={"threads": 8}, env={"LLAMA_TASK_WAKEUP": "0"}),
    Variant("topk profile, threads 8", topk=True, changes={"threads": 8}),
]


def parse_probe(path: Path) -> dict[int, dict[str, float]]:
    """The probe's windows summed per batch size (rows), weighted by steps: means in ms."""
    sums: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("t="):
            continue
        kv = dict(part.split("=", 1) for part in line.split())
        rows, steps = int(kv["rows"]), int(kv["steps"])
        acc = sums.setdefault(rows, {"steps": 0.0})
        acc["steps"] += steps
        for k, v in kv.items():
            if k not in ("t", "rows", "steps"):
                acc[k] = acc.get(k, 0.0) + float(v) * steps
    return {
        rows: {k: (v if k == "steps" else v / acc["steps"]) for k, v in acc.items()}
        for rows, acc in sums.items()
    }


class GpuUtil:
    """nvidia-smi's utilization.gpu every 100 ms, in the background."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = path.open("w")
        self.proc: subprocess.Popen[bytes] | None = None
        if shutil.which("nvidia-smi") is None:
            return
        self.proc = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=timestamp,utilization.gpu,clocks.sm",
                "--format=csv,noheader,nounits",
                "-lms",
                "100",
            ],
            stdout=self.f,
            stderr=subprocess.DEVNULL,
        )

    def samples(self) -> list[tuple[float, float]]:
        out = []
        for line in self.path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            try:
                t = time.mktime(time.strptime(parts[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
                out.append((t + float("0." + parts[0].split(".")[1]), float(parts[1])))
            except (ValueError, IndexError):
                continue
        return out

    def mean(self, t0: float, t1: float) -> float | None:
        vals = [u for t, u in self.samples() if t0 <= t <= t1]
        return sum(vals) / len(vals) if vals else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()
        self.f.close()


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model or Path(args.models) / "vt-q8_0.gguf")
    gpu = gpu_name() if args.base_profile is None else args.base_profile
    base = PROFILES[args.base_profile] if args.base_profile else profile_for_gpu(gpu)
    print(f"GPU {gpu}; base profile {base.name}", flush=True)
    util = GpuUtil(out / "gpu-util.csv")
    rows_path = out / "steps.jsonl"
    try:
        for i, v in enumerate(VARIANTS):
            left = args.deadline_s - (time.monotonic() - T0)
            if left < 25 + 10 * len(v.cells):
                print(f"{v.name}: skipped, {left:.0f} s left", flush=True)
                continue
            if args.only and str(i) not in args.only.split(","):
                continue
            if v.topk and base.name + "-topk" not in PROFILES:
                print(f"{v.name}: skipped, no profile {base.name}-topk", flush=True)
                continue
            start = PROFILES[base.name + "-topk"] if v.topk else base
            prof: ServerProfile = start.with_overrides(**v.changes)
            probe_base = out / f"v{i}" / "probe"
            probe_base.parent.mkdir(parents=True, exist_ok=True)
            env = {
                "LD_PRELOAD": str(Path(args.probe).resolve()),
                "STEP_PROBE_OUT": str(probe_base),
                "STEP_PROBE_WINDOW_S": "1",
                **({"STEP_PROBE_HZ": str(v.stacks_hz)} if v.stacks_hz else {}),
                **v.env,
            }
            group = serve(model, prof, log_dir=out / f"v{i}", ready_timeout_s=240, env=env)
            cells = []
            with group:
                for c, n in args.cells or v.cells:
                    t0 = time.time()
                    res = loadgen.run_load(
                        group.urls,
                        concurrency=c,
                        n_predict=n,
                        sampling=v.sampling,
                        client=args.client,
                    )
                    t1 = time.time()
                    res.pop("raw", None)
                    cells.append((c, n, res, util.mean(t0, t1)))
                try:
                    with urllib.request.urlopen(group.metrics_urls[0], timeout=5) as resp:
                        (out / f"v{i}" / "metrics.txt").write_bytes(resp.read())
                except OSError as exc:
                    print(f"metrics: {exc}", flush=True)
            # the server's own file: the largest (programs it runs write near-empty ones)
            found = sorted(probe_base.parent.glob("probe.*[0-9]"), key=lambda p: p.stat().st_size)
            probe = parse_probe(found[-1]) if found else {}
            for c, n, res, gpu_util in cells:
                per_stream = res.get("per_stream_tps_p50")
                p = probe.get(c, {})
                row = {
                    "variant": v.name,
                    "profile": prof.name,
                    "command": group.servers[0].command[1:],
                    "request_sampling": v.sampling,
                    "concurrency": c,
                    "n_predict": n,
                    "total_tps": res.get("total_tps"),
                    "per_stream_tps_p50": per_stream,
                    "client_step_ms": 1000.0 / per_stream if per_stream else None,
                    "gpu_util_pct": gpu_util,
                    "probe": p,
                    "gpu": gpu,
                }
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(fmt_row(row), flush=True)
            found = sorted(probe_base.parent.glob("probe.*.stacks"), key=lambda p: p.stat().st_size)
            if found:
                stacks = found[-1]
                report = symbolize(stacks)
                (out / "stacks.txt").write_text(f"variant: {v.name}, {prof.name}\n{report}")
                print(report[:6000], flush=True)
    finally:
        util.stop()


def fmt_row(r: dict[str, Any]) -> str:
    p = r["probe"]
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    return (
        f"{r['variant']:26} c={r['concurrency']:<3} total={f(r['total_tps'])} "
        f"client_step={f(r['client_step_ms'])} | probe steps={p.get('steps', 0):.0f} "
        f"period={f(p.get('period_ms'))} build={f(p.get('build_ms'))} "
        f"launch={f(p.get('launch_ms'))} gpu_wait={f(p.get('sync_ms'))} "
        f"sampled={f(p.get('sampled_ms'))} server={f(p.get('server_ms'))} "
        f"nodes={f(p.get('nodes'))} splits={f(p.get('splits'))} | gpu_util={f(r['gpu_util_pct'])}%"
    )


# ---- stack samples -----------------------------------------------------------------------------


class Symbols:
    """A module's function symbols by address (nm), for offsets that dladdr gave."""

    def __init__(self) -> None:
        self.tables: dict[str, tuple[list[int], list[str]]] = {}

    def _load(self, module: str) -> tuple[list[int], list[str]]:
        if module not in self.tables:
            entries: list[tuple[int, str]] = []
            for dynamic in ([], ["-D"]):
                try:
                    text = subprocess.run(
                        ["nm", "-C", "-n", "--defined-only", *dynamic, module],
                        capture_output=True,
                        text=True,
                        check=False,
                        timeout=60,
                    ).stdout
                except (OSError, subprocess.TimeoutExpired):
                    text = ""
                for line in text.splitlines():
                    m = re.match(r"([0-9a-f]+) [tTwWiI] (.*)", line)
                    if m:
                        entries.append((int(m.group(1), 16), m.group(2)))
                if entries:
                    break
            entries.sort()
            self.tables[module] = ([a for a, _ in entries], [n for _, n in entries])
        return self.tables[module]

    def name(self, frame: str) -> str:
        module, _, off = frame.rpartition("+0x")
        addrs, names = self._load(module) if module != "?" else ([], [])
        i = bisect.bisect_right(addrs, int(off, 16)) - 1
        short = Path(module).name
        if i < 0:
            return f"{short}+0x{off}"
        return f"{shorten(names[i])} [{short}]"


def shorten(name: str) -> str:
    """A C++ name without its argument list and template arguments (they make lines unreadable)."""
    for _ in range(6):
        name = re.sub(r"<[^<>]*>", "", name)
    name = re.sub(r"\([^()]*\)( const)?( \[clone [^]]*\])?$", "", name)
    return name[:140]


def symbolize(path: Path, top: int = 25) -> str:
    syms = Symbols()
    samples = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            samples.append((int(parts[0]), parts[1:]))
    total = len(samples)
    if total == 0:
        return "no stack samples\n"
    by_phase = Counter(ph for ph, _ in samples)
    lines = [f"{total} samples of the main thread (wall clock)"]
    lines += [
        f"  {PHASES.get(ph, ph):14} {n:6d}  {100 * n / total:5.1f}%"
        for ph, n in by_phase.most_common()
    ]
    ours = ("libllama", "libggml", "llama-server", "libmtmd")
    for label, phases in (("busy", {0, 1, 2, 3, 4}), ("server (between steps)", {0})):
        chosen = [fr for ph, fr in samples if phases is None or ph in phases]
        if not chosen:
            continue
        self_ctr: Counter[str] = Counter()
        ours_ctr: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        for frames in chosen:
            names = [syms.name(fr) for fr in frames]
            if names:
                self_ctr[names[0]] += 1
            own = next((nm for nm in names if any(o in nm for o in ours)), None)
            if own:
                ours_ctr[own] += 1
            for nm in set(names):
                incl[nm] += 1
        n = len(chosen)
        for title, ctr in (
            ("self (innermost frame)", self_ctr),
            ("innermost llama.cpp frame", ours_ctr),
            ("inclusive", incl),
        ):
            lines.append(f"\n{label}: {title}, of {n} samples")
            lines += [f"  {100 * k / n:5.1f}%  {nm}" for nm, k in ctr.most_common(top)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--models", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--probe", required=True, help="step_probe.so")
    r.add_argument("--deadline-s", type=float, default=300.0)
    r.add_argument("--model", help="instead of MODELS/vt-q8_0.gguf")
    r.add_argument("--base-profile", help="instead of the GPU's VibeThinker profile")
    r.add_argument("--only", help="variant numbers, comma-separated")
    r.add_argument("--client", default="aiohttp", help="loadgen client (aiohttp, httpx)")
    r.add_argument(
        "--cells",
        type=lambda t: [tuple(int(x) for x in c.split("x")) for c in t.split(",")],
        help="STREAMSxTOKENS,... instead of each variant's",
    )
    s = sub.add_parser("stacks")
    s.add_argument("file")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        print(symbolize(Path(args.file)))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
