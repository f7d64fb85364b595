#!/usr/bin/env bash
# Session 17, calls 2, 3 and 6 as run, 4 and 5 as comments (each a device call's command line; runs 2 and 3 on call 1's
# warm H100 with its build, run 4 on a second, fresh H100 with that build carried as
# .gpu/bin/cuda90.tar.xz.* from call 5's `pack`).
set -uo pipefail
export PYTHONUNBUFFERED=1
# run 2 (call 2): five more interleaved rounds of the fixed loadgen
BENCH_ONLY=h100-vibethinker BENCH_CELLS=16x512 BENCH_ARGS="--model f16 --rounds 5" GPU_BUDGET_S=200 \
  benchmarks/gpu_serving/run_gpu.sh headline            # -> h100-s17-run2-sdk.jsonl
# run 3 (call 3): four rounds with anyio's backend imported on each worker's first request, as
# before session 16's fix (clients still made before the common start)
LOADGEN_PREIMPORT_ANYIO=0 BENCH_ONLY=h100-vibethinker BENCH_CELLS=16x512 BENCH_ARGS="--model f16 --rounds 4" \
  GPU_BUDGET_S=200 benchmarks/gpu_serving/run_gpu.sh headline   # -> h100-s17-run3-sdk-lazy-import.jsonl
# call 4: benchmarks/gpu_serving/run_gpu.sh pack (the build, 45 MB in three parts)
# call 5 asked for an H200 with that build carried; an H100 came and the call stopped at once.
# run 4 (call 6, on that H100): four rounds as in run 1
BENCH_ONLY=h100-vibethinker BENCH_CELLS=16x512 BENCH_ARGS="--model f16 --rounds 4" GPU_BUDGET_S=200 \
  benchmarks/gpu_serving/run_gpu.sh headline            # -> h100-s17-run4-sdk.jsonl
