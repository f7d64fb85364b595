"""Turn the runs' results/*.jsonl into results/summary.csv and results/gpu_serving.png.

    benchmarks/.venv-bench/bin/python benchmarks/gpu_serving/summarize.py

The chart needs matplotlib (the benchmark virtualenv has it; the GPU machine's image too).
"""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUNS = {
    "h100-run1-sweep.jsonl": "run1",
    "h100-run2-matrix.jsonl": "run2",
    "h100-run3-final.jsonl": "run3",
    # second GPU session: the slowdown's cause (run4, stock build), the fix (run5), final (run6)
    "h100-run4-diagnosis.jsonl": "run4",
    "h100-run5-patched.jsonl": "run5",
    "h100-run6-final.jsonl": "run6",
    "h100-run7-long-slots.jsonl": "run7",
    # session 4: the batched sampling op (patch 0002) against stock sampling, headline plan
    "h100-s4-run1-headline.jsonl": "s4run1",
    # session 5: the same headline plan on another H100 (no H200 was lent)
    "h100-s5-run1-headline.jsonl": "s5run1",
    # session 7: the result hand-off (patch 0003) against the stock one, same build
    "h100-s7-run1-headline.jsonl": "s7run1",
    "h100-s7-run2-sdk-mps.jsonl": "s7run2",
    # session 9: one stream keeps llama.cpp's own sampling graphs (patch 0002, from two rows)
    "h100-s9-run1-headline.jsonl": "s9run1",
    "h100-s9-run1-op-always.jsonl": "s9run1op",
    # session 10: Q8_0, Q4_K_M and F16 side by side (run_bench.py --model)
    "h100-s10-run1-quant.jsonl": "s10run1",
    "h100-s10-run2-f16.jsonl": "s10run2",
    "h100-s10-run3-f16-mps.jsonl": "s10run3",
    "h100-s10-run3-f16-headline.jsonl": "s10run3h",
    "h100-s10-run4-f16-repeat.jsonl": "s10run4",
    # session 11: F16 on another H100 host (warm servers; patch 0002's op one block per row)
    "h100-s11-run1-served.jsonl": "s11run1",
    # session 13: the op with teams of blocks per row (GGML_CUDA_SAMPLE_ROWS_TEAM auto) against one
    "h100-s13-run1-served.jsonl": "s13run1",
    # session 15: the headline plan in one call; one stream with the op; F16 against BF16; SDK
    "h100-s15-run1-headline.jsonl": "s15run1",
    "h100-s15-run2-one-stream-bf16.jsonl": "s15run2",
    "h100-s15-run3-f16-bf16.jsonl": "s15run3",
    "h100-s15-run4-sdk.jsonl": "s15run4",
    # session 16: the headline plan on a slower H100 host; SDK x6, BF16 against F16, -lv 4
    "h100-s16-run1-headline.jsonl": "s16run1",
    "h100-s16-run2-sdk-bf16-lv4.jsonl": "s16run2",
    # session 17: the SDK against direct with the fixed loadgen; run 3 with the lazy import
    "h100-s17-run1-sdk.jsonl": "s17run1",
    "h100-s17-run2-sdk.jsonl": "s17run2",
    "h100-s17-run3-sdk-lazy-import.jsonl": "s17run3",
    "h100-s17-run4-sdk.jsonl": "s17run4",
}
COLUMNS = [
    "run", "config", "server", "client", "endpoint", "concurrency", "n_predict",
    "requests_per_stream", "instances", "mps", "model", "requests",
    "errors", "tokens", "wall_s", "total_tps", "per_stream_tps_p50", "ttft_p50_s", "ttft_p95_s",
    "e2e_p50_s", "e2e_p95_s", "GGML_CUDA_SAMPLE_ROWS_TEAM", "note",
]  # fmt: skip


def rows() -> list[dict[str, Any]]:
    out = []
    for name, run in RUNS.items():
        for line in (RESULTS / name).read_text().splitlines():
            r = json.loads(line)
            # skipped cells, and warm-up cells (not measurements: run_bench.py records them so)
            if not r.get("concurrency") or r.get("total_tps") is None or r.get("warmup"):
                continue
            r["run"] = run
            out.append(r)
    return out


def engine() -> dict[int, float]:
    """llama-batched-bench S_TG (decode tokens/s, no sampling) by batch, non-unified KV."""
    text = (RESULTS / "h100-run1-engine.md").read_text()
    out: dict[int, float] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if (
            len(cells) >= 8
            and cells[0] == "64"
            and "kv unified" not in line
            and re.fullmatch(r"\d+", cells[2])
        ):
            out[int(cells[2])] = float(cells[7])
    return out


def write_csv(data: list[dict[str, Any]]) -> None:
    with (RESULTS / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in data:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})


def chart(data: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("default llama-server", "run2", "default"),
        ("session 1 profile, stock build (slots scatter)", "run2", "tuned"),
        ("h100-vibethinker: 1 server x 64 slots", "run6", "tuned"),
        ("h100-vibethinker-mps: 4 servers x 16, MPS", "run6", "tuned-mps"),
        ("model card, batched sampling: 1 x 64 (s4)", "s4run1", "h100-vibethinker"),
        ("model card, stock sampling: 1 x 64 (s4)", "s4run1", "h100-vibethinker+stock-sampling"),
        ("top-k 64, batched sampling: 1 x 64 (s4)", "s4run1", "h100-vibethinker-topk"),
        ("model card, batched sampling: 1 x 64 (s5)", "s5run1", "h100-vibethinker"),
        ("model card, batched, 4 x 16 + MPS (s5)", "s5run1", "h100-vibethinker-mps"),
        ("model card, hand-off patch: 1 x 64 (s7)", "s7run1", "h100-vibethinker"),
        ("model card, stock hand-off: 1 x 64 (s7)", "s7run1", "h100-vibethinker+stock-handoff"),
        ("top-k 64, hand-off patch: 1 x 64 (s7)", "s7run1", "h100-vibethinker-topk"),
        ("model card, op from 2 rows: 1 x 64 (s9)", "s9run1", "h100-vibethinker"),
        ("top-k 64, op from 2 rows: 1 x 64 (s9)", "s9run1", "h100-vibethinker-topk"),
        ("llama-cpp-python server", "run2", "llama-cpp-python"),
        ("transformers generate()", "run3", "transformers"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    eng = engine()
    for ax, n in ((axes[0], 256), (axes[1], 1024)):
        xs = sorted(eng)
        ax.plot(xs, [eng[x] for x in xs], "k--", lw=1, label="engine alone: decode, no sampling")
        for label, run, config in series:
            pts = sorted(
                (r["concurrency"], r["total_tps"])
                for r in data
                if r["run"] == run and r["config"] == config and r["n_predict"] == n
            )
            if pts:
                # tab10 has ten colours: the later sessions' series get square markers
                marker = "s" if "(s7)" in label else "^" if "(s9)" in label else "o"
                ax.plot(*zip(*pts, strict=True), marker=marker, label=label)
        # sessions 10 and 15: one server, F16 / BF16 weights, every run (several per cell):
        # markers only
        for label, session, config, model, marker, color in (
            ("model card, F16 weights, 1 x 64 (s10)", "s10", "h100-vibethinker", "f16", "D", "k"),
            ("top-k, F16 weights, 1 x 64 (s10)", "s10", "h100-vibethinker-topk", "f16", "P", "k"),
            ("model card, BF16 weights, 1 x 64 (s15)", "s15", "h100-vibethinker", "bf16", "D", "m"),
            ("top-k, BF16 weights, 1 x 64 (s15)", "s15", "h100-vibethinker-topk", "bf16", "P", "m"),
        ):
            pts = [
                (r["concurrency"], r["total_tps"])
                for r in data
                if r["run"].startswith(session) and r["config"] == config
                and r.get("model") == f"vt-{model}.gguf" and r["n_predict"] == n
            ]  # fmt: skip
            if pts:
                ax.plot(*zip(*pts, strict=True), marker, ls="none", color=color, label=label)
        ax.axhline(8000, color="red", lw=0.8, ls=":")
        ax.text(5, 8200, "target 8,000 at 64 streams", color="red", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 4, 16, 32, 64, 128], ["1", "4", "16", "32", "64", "128"])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("tokens/s, all streams")
        ax.set_title(f"{n}-token answers")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(top=17000)  # room for the legend above the curves
    axes[0].legend(fontsize=6, loc="upper left", ncol=2)

    # P95 end-to-end latency, 16 streams x 512 tokens; "steady" = 3 requests per stream, so new
    # requests arrive while others decode, on a server that has served a 64-stream load before.
    ax = axes[2]
    bars = [
        ("default llama-server", "run6", "default", 1),
        ("stock build, 1 x 64: fresh server", "run4", "tuned-ram0", 1),
        ("stock build, 1 x 64: steady", "run4", "tuned-ram0", 3),
        ("patched, 1 x 64: steady", "run5", "tuned-ram0", 3),
        ("patched, 1 x 64", "run6", "tuned", 1),
        ("patched, 4 x 16 + MPS: steady", "run5", "ram0-4x16-mps", 3),
        ("patched, 4 x 16 + MPS", "run6", "tuned-mps", 1),
        ("patched, 2 x 32 + MPS", "run6", "tuned-mps-2x32", 1),
        ("s4, model card, stock sampling, 1 x 64", "s4run1", "h100-vibethinker+stock-sampling", 1),
        ("s4, model card, batched sampling, 1 x 64", "s4run1", "h100-vibethinker", 1),
        ("s4, model card, batched, 4 x 16 + MPS", "s4run1", "h100-vibethinker-mps", 1),
        ("s5, model card, batched sampling, 1 x 64", "s5run1", "h100-vibethinker", 1),
        ("s5, model card, batched, 4 x 16 + MPS", "s5run1", "h100-vibethinker-mps", 1),
        ("s5, top-k, batched, 4 x 16 + MPS", "s5run1", "h100-vibethinker-mps-topk", 1),
        ("s7, model card, stock hand-off, 1 x 64", "s7run1", "h100-vibethinker+stock-handoff", 1),
        ("s7, model card, hand-off patch, 1 x 64", "s7run1", "h100-vibethinker", 1),
        ("s7, top-k, hand-off patch, 1 x 64", "s7run1", "h100-vibethinker-topk", 1),
        ("s9, model card, op from 2 rows, 1 x 64", "s9run1", "h100-vibethinker", 1),
        ("s9, top-k, op from 2 rows, 1 x 64", "s9run1", "h100-vibethinker-topk", 1),
        ("s9, top-k, 4 x 16 + MPS", "s9run1", "h100-vibethinker-mps-topk", 1),
        ("s10, model card, Q8_0, 1 x 64", "s10run1", "h100-vibethinker", 1, "vt-q8_0.gguf"),
        ("s10, top-k, Q4_K_M, 1 x 64", "s10run1", "h100-vibethinker-topk", 1, "vt-q4_k_m.gguf"),
        ("s10, model card, F16, 1 x 64", "s10run4", "h100-vibethinker", 1, "vt-f16.gguf"),
        ("s10, top-k, F16, 1 x 64", "s10run4", "h100-vibethinker-topk", 1, "vt-f16.gguf"),
        ("s11, another H100, model card, F16", "s11run1", "h100-vibethinker", 1, "vt-f16.gguf"),
        ("s11, another H100, top-k, F16", "s11run1", "h100-vibethinker-topk", 1, "vt-f16.gguf"),
        ("s13, model card, F16, 1 block", "s13run1", "h100-vibethinker", 1, "vt-f16.gguf", "1"),
        ("s13, model card, F16, teams", "s13run1", "h100-vibethinker", 1, "vt-f16.gguf", "auto"),
        ("s13, top-k, F16, 1 block", "s13run1", "h100-vibethinker-topk", 1, "vt-f16.gguf", "1"),
        ("s13, top-k, F16, teams", "s13run1", "h100-vibethinker-topk", 1, "vt-f16.gguf", "auto"),
        ("s15, model card, F16", "s15run3", "h100-vibethinker", 1, "vt-f16.gguf"),
        ("s15, model card, BF16", "s15run3", "h100-vibethinker", 1, "vt-bf16.gguf"),
        ("s15, top-k, F16", "s15run3", "h100-vibethinker-topk", 1, "vt-f16.gguf"),
        ("s15, top-k, BF16", "s15run3", "h100-vibethinker-topk", 1, "vt-bf16.gguf"),
    ]  # fmt: skip
    names, values = [], []
    # optional after rps: the model file, then the op's GGML_CUDA_SAMPLE_ROWS_TEAM
    for label, run, config, rps, *model in bars:
        found = [
            r["e2e_p95_s"]
            for r in data
            if r["run"] == run and r["config"] == config and r["concurrency"] == 16
            and r["n_predict"] == 512 and r.get("requests_per_stream", 1) == rps
            and (not model or r.get("model") == model[0])
            and (len(model) < 2 or r.get("GGML_CUDA_SAMPLE_ROWS_TEAM") == model[1])
        ]  # fmt: skip
        if found and model:  # sessions 10 on ran each cell several times: their median
            names.append(label + (f" (median of {len(found)})" if len(found) > 1 else ""))
            values.append(statistics.median(found))
        elif found:  # the first run of the cell (a fresh server)
            names.append(label)
            values.append(found[0])
    ax.barh(names, values, color=["#c44" if v > 3 else "#4a4" for v in values])
    for i, v in enumerate(values):
        ax.text(v + 0.2, i, f"{v:.2f} s", va="center", fontsize=8)
    ax.axvline(3, color="red", lw=0.8, ls=":")
    ax.set_xlabel("P95 end-to-end latency, 16 streams x 512 tokens (target 3 s)")
    ax.set_title("latency under steady load")
    ax.invert_yaxis()
    fig.suptitle(
        "VibeThinker-1.5B shape (Qwen2, random weights, Q8_0 unless named) on one NVIDIA H100 "
        "80GB HBM3, llama.cpp 0c1e570 (llama-cpp-python 0.3.36),\n2026-11-28, (s4, s5) 2026-12-05, "
        "(s7, s9, s10) 2026-12-06, (s11, another H100 host; s13, s15) 2026-12-07",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "gpu_serving.png", dpi=110)


def main() -> None:
    data = rows()
    write_csv(data)
    chart(data)
    print(f"{len(data)} rows -> {RESULTS / 'summary.csv'}, {RESULTS / 'gpu_serving.png'}")


if __name__ == "__main__":
    main()
