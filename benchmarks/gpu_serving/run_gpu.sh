#!/usr/bin/env bash
# The GPU benchmark on a machine with an NVIDIA GPU, nvcc, cmake and python3 (no package index
# needed), inputs from prepare.sh under .gpu/. Run from the repository root:
#
#   benchmarks/gpu_serving/run_gpu.sh [STAGE...]      (default: setup engine sweep matrix)
#   benchmarks/gpu_serving/run_gpu.sh headline        the answer table's cells, build included
#
# Stages:
#   setup     install carried wheels if modules are missing; build llama.cpp for sm_90 with
#             server/llama/build.sh (skipped when a build of the tree's patches is already there
#             or carried as .gpu/bin/cuda90.tar.xz.*); write the VibeThinker-shaped model (F16)
#             and quantize it (Q8_0).
#   headline  setup (unless it ran), then plan headline: the best profiles of the GPU found
#             (h200-* on an H200, else h100-*) on the file that wins each cell (F16 for many
#             streams, Q4_K_M for one, quantized here), each with stock sampling too, SDK vs
#             direct, warm servers; then Q8_0 side by side and the MPS profiles (the plan starts
#             and stops the daemon). ~2.5 min for the answer table after setup, ~4 min in all;
#             run_bench.py --plan headline --list shows it.
#   q4        also quantize Q4_K_M (a plan stage whose --list names vt-q4_k_m.gguf does it;
#             likewise vt-bf16.gguf, converted from the F16 file, for BENCH_ARGS="--model bf16").
#   engine    llama-bench and llama-batched-bench: the engine's own decode rate, no server.
#   mps-on    start the CUDA MPS control daemon (kernels of several processes then share the GPU
#             at the same time instead of taking turns); mps-off stops it.
#   cli       the user's path: `vibe-serve --profile h100-vibethinker-mps-topk` writes the canary URLs,
#             vibesdk.Client answers 8 users through them, SIGTERM stops every server.
#   pack      put the built prefix into $OUT (split in 15 MiB parts) so a later call can carry it.
#   PLAN      any other word is a plan of run_bench.py (holes, sweep, matrix, final2, s2a, ...),
#             after setup (unless it ran).
#
# Environment: GPU_BUDGET_S (default 570) seconds from the start to the deadline the plans keep
# (cells that would end later are recorded as skipped); BENCH_ONLY=NAME,... configurations to run
# (profile names such as h100-vibethinker-mps, NAME+stock-sampling, NAME+stock-handoff, or
# variants of runs 1-7);
# BENCH_CELLS=64x256,16x512 instead of the plans' cells; BENCH_GPU=h100|h200 overrides which
# profiles headline picks; BENCH_ARGS more run_bench.py arguments. Every plan is checked
# (run_bench.py --list) before the first stage runs, so a wrong name costs no build.
#
# Inputs (ignored by git, carried by the device tool): .gpu/llama-src.tar.xz (llama-cpp-python's
# sdist minus docs/tests/models) or, with a carried build (.gpu/bin/cuda90.tar.xz.*, from `pack`),
# .gpu/py.tar.xz (its llama_cpp package and gguf-py alone); .gpu/ggml-vocab-qwen2.gguf; .gpu/whl/*.whl;
# .gpu/commit. Outputs: $OUT (or benchmarks/gpu_serving/out) gets run.log, engine.md, results.jsonl,
# logs.tgz.
set -uo pipefail

root="$(pwd)"
out="${OUT:-$root/benchmarks/gpu_serving/out}"
mkdir -p "$out"
work="$root/.gpu-build"
prefix="$work/cuda90"
models="$work/models"
logs="$work/logs"
mkdir -p "$work" "$models" "$logs"
stages=("$@"); [[ ${#stages[@]} -eq 0 ]] && stages=(setup engine sweep matrix)
export PYTHONUNBUFFERED=1
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$out/run.log"; }

setup_python() {
  if ! python3 -c 'import pydantic_settings, mmh3, opentelemetry.sdk, tenacity, sse_starlette, starlette_context, diskcache, fastapi' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
      >>"$out/run.log" 2>&1 || log "wheel install failed"
  fi
  # The whole trimmed tree when building; the Python parts alone (llama_cpp, gguf-py) otherwise.
  local src=.gpu/llama-src.tar.xz; [[ -f $src ]] || src=.gpu/py.tar.xz
  [[ -d /tmp/lcp ]] || { mkdir -p /tmp/lcp && tar -xJf "$src" -C /tmp/lcp; }
  export PYTHONPATH="/tmp/site:$root:$root/server/src:/tmp/lcp/vendor/llama.cpp/gguf-py:/tmp/lcp${PYTHONPATH:+:$PYTHONPATH}"
  export LLAMA_CPP_LIB_PATH="$prefix/lib"
  export VIBESDK_LLAMA_SERVER="$prefix/bin/llama-server"
}

stage_setup() {
  {
    echo "== probe"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    nvcc --version | tail -2; python3 --version; nproc; free -g | head -2
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1
    python3 -c 'import matplotlib, aiohttp, numpy; print("matplotlib", matplotlib.__version__, "aiohttp", aiohttp.__version__, "numpy", numpy.__version__)' 2>&1
  } >"$logs/probe.txt" 2>&1
  cat "$logs/probe.txt"
  if [[ ! -x "$prefix/bin/llama-server" ]] && ls .gpu/bin/cuda90.tar.xz.* >/dev/null 2>&1; then
    log "unpacking carried build"; cat .gpu/bin/cuda90.tar.xz.* | tar -xJf - -C "$work"
  fi
  # build.sh's stamp names the patches a build has; the tree's are server/llama/patches.
  local patches_id stamp
  patches_id="$(server/llama/build.sh --print-id)"
  stamp="$(cd "$prefix" 2>/dev/null && ls -d .built-* 2>/dev/null | tail -1)"
  if [[ -x "$prefix/bin/llama-server" && $stamp != *-"$patches_id" ]]; then
    if [[ -f .gpu/llama-src.tar.xz ]]; then
      log "build $stamp lacks this tree's patches ($patches_id): building again"
      rm -rf "$prefix"
    else
      log "WARNING: build $stamp lacks this tree's patches ($patches_id) and no source was carried to rebuild"
    fi
  fi
  # The F16 model is written (CPU, ~40 s) while llama.cpp builds; quantizing needs the build.
  local model_pid=""
  if [[ ! -f "$models/vt-f16.gguf" ]]; then
    python3 benchmarks/gpu_serving/make_model.py --vocab .gpu/ggml-vocab-qwen2.gguf --out "$models/vt-f16.gguf" >>"$out/run.log" 2>&1 &
    model_pid=$!
  fi
  if [[ ! -x "$prefix/bin/llama-server" ]]; then
    log "building llama.cpp (sm_90)"
    t0=$SECONDS
    server/llama/build.sh --src /tmp/lcp/vendor/llama.cpp --cuda 90 --jobs "$(nproc)" --out "$prefix" \
      >"$logs/build.log" 2>&1 || { tail -40 "$logs/build.log"; log "BUILD FAILED"; exit 1; }
    log "built in $((SECONDS - t0)) s"; grep "^patch" "$logs/build.log" | tee -a "$out/run.log"; du -sh "$prefix"/lib/* | sort -h | tail -3
  fi
  log "llama.cpp build: $(cd "$prefix" && ls -d .built-* 2>/dev/null | tail -1)"
  [[ -n $model_pid ]] && { wait "$model_pid" || { log "make_model.py failed"; exit 1; }; }
  if [[ ! -f "$models/vt-q8_0.gguf" ]]; then
    t0=$SECONDS
    "$prefix/bin/llama-quantize" "$models/vt-f16.gguf" "$models/vt-q8_0.gguf" Q8_0 "$(nproc)" >"$logs/quantize.log" 2>&1
    log "model quantized in $((SECONDS - t0)) s"; ls -la "$models"
  fi
}

stage_quantize() {  # FILE TYPE: vt-FILE.gguf from the F16 file, unless it is there
  [[ -f "$models/vt-$1.gguf" ]] && return
  local t0=$SECONDS
  "$prefix/bin/llama-quantize" "$models/vt-f16.gguf" "$models/vt-$1.gguf" "$2" "$(nproc)" >>"$logs/quantize.log" 2>&1
  log "$2 written in $((SECONDS - t0)) s"; ls -la "$models"
}
stage_q4() { stage_quantize q4_k_m Q4_K_M; }

stage_engine() {
  log "engine: llama-bench"
  for q in q8_0 q4_k_m f16; do
    [[ -f "$models/vt-$q.gguf" ]] || continue
    "$prefix/bin/llama-bench" -m "$models/vt-$q.gguf" -ngl 99 -fa 1 -p 512 -n 128 -r 3 -o md 2>&1 | grep -E "^\|" | tee -a "$out/engine.md"
  done
  log "engine: llama-batched-bench (decode only, no sampling)"
  "$prefix/bin/llama-batched-bench" -m "$models/vt-q8_0.gguf" -ngl 99 -fa on -c 131072 -b 2048 -ub 512 \
    -npp 64 -ntg 256 -npl 1,4,16,32,64,128 2>&1 | grep -E "^\|" | tee -a "$out/engine.md"
  "$prefix/bin/llama-batched-bench" -m "$models/vt-q8_0.gguf" -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -kvu \
    -npp 64 -ntg 256 -npl 64 2>&1 | grep -E "^\|" | tail -1 | sed 's/$/ (kv unified)/' | tee -a "$out/engine.md"
}

stage_pack() {
  (cd "$work" && tar -cf - cuda90 | xz -T0 -6 | split -b 15M - "$out/cuda90.tar.xz.")
  ls -la "$out"
}

stage_mps_on() {
  if nvidia-cuda-mps-control -d; then
    sleep 1; export BENCH_MPS=1; log "MPS control daemon started"
  else
    log "MPS control daemon did not start"
  fi
}

stage_mps_off() {
  if [[ ${BENCH_MPS:-} == 1 ]]; then
    echo quit | nvidia-cuda-mps-control; unset BENCH_MPS; log "MPS control daemon stopped"
    cp -r /var/log/nvidia-mps "$logs/mps" 2>/dev/null || true
  fi
}

stage_cli() {
  log "vibe-serve --profile h100-vibethinker-mps-topk, then vibesdk.Client through its URLs"
  local urls="$out/canary-urls.json"
  python3 -m vibesdk_server.serving._cli --profile h100-vibethinker-mps-topk \
    --model "$models/vt-q8_0.gguf" --write-urls "$urls" --log-dir "$logs/cli" >"$logs/cli.out" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do grep -q '^wrote' "$logs/cli.out" || ! kill -0 "$pid" 2>/dev/null && break; sleep 1; done
  tee -a "$out/run.log" <"$logs/cli.out"
  python3 - "$urls" <<'PY' 2>&1 | tee -a "$out/run.log"
import json, sys

import vibesdk
from vibesdk.testing import InMemoryFlagSource, make_document, make_flag

urls = json.load(open(sys.argv[1]))["backend"]["urls"]
flag = make_flag("vibethinker", canary_url=urls, rollout_bps=10_000)
with vibesdk.Client(flag_source=InMemoryFlagSource(make_document(flag))) as client:
    for u in range(8):
        r = client.chat("vibethinker", f"user-{u}", [{"role": "user", "content": "2+2?"}], max_tokens=64)
        print(f"user-{u}: {r.variant} via {r.backend}, fallback={r.fallback}, "
              f"{r.usage.output_tokens} tokens in {r.latency_s:.2f} s")
PY
  kill -TERM "$pid"; wait "$pid"; log "vibe-serve exited with code $? after SIGTERM"
}

plan_args=(--gpu "${BENCH_GPU:-auto}" --only "${BENCH_ONLY:-}" --cells "${BENCH_CELLS:-}")
# shellcheck disable=SC2206  # BENCH_ARGS is words on purpose
plan_args+=(${BENCH_ARGS:-})
plan_of() {  # the run_bench.py plan a stage runs, if any (headline: the plan of that name)
  case "$1" in setup|q4|engine|pack|mps-on|mps-off|cli) ;; *) echo "$1" ;; esac
}

run_plan() {
  log "bench plan $1"
  python3 benchmarks/gpu_serving/run_bench.py --plan "$1" --models "$models" --out "$out" --logs "$logs" \
    --deadline-s "$(( ${GPU_BUDGET_S:-570} - SECONDS ))" "${plan_args[@]}"
}

setup_python
needs_q4=" " needs_bf16=" "  # the plans whose --list names these files: written before they run
for s in "${stages[@]}"; do  # a wrong plan or name fails here, before the build
  p="$(plan_of "$s")"
  [[ -z $p ]] && continue
  listing="$(python3 benchmarks/gpu_serving/run_bench.py --plan "$p" --list "${plan_args[@]}" 2>&1)"
  rc=$?
  tee -a "$out/run.log" <<<"$listing"
  [[ $rc -eq 0 ]] || { log "stopped: plan $p cannot run as asked"; exit 2; }
  grep -q "^plan .*model files:.*vt-q4_k_m\.gguf" <<<"$listing" && needs_q4+="$p "
  grep -q "^plan .*model files:.*vt-bf16\.gguf" <<<"$listing" && needs_bf16+="$p "
done
plan_stage() {  # the Q4_K_M and BF16 files first when the plan needs them
  [[ $needs_q4 == *" $1 "* ]] && stage_q4
  [[ $needs_bf16 == *" $1 "* ]] && stage_quantize bf16 BF16
  run_plan "$1"
}
did_setup=""
for s in "${stages[@]}"; do
  case "$s" in
    setup) stage_setup; did_setup=1 ;;
    q4) stage_q4 ;;
    engine) stage_engine ;;
    pack) stage_pack ;;
    mps-on) stage_mps_on ;;
    mps-off) stage_mps_off ;;
    cli) stage_cli ;;
    *) [[ -n $did_setup ]] || { stage_setup; did_setup=1; }; plan_stage "$s" ;;  # a plan needs the build
  esac
done
tar -czf "$out/logs.tgz" -C "$work" logs 2>/dev/null
log "done"
