#!/usr/bin/env bash
# Session 17, call 1 (ran on an H100: the else branch), by the card that comes. On an H200: the documented headline plan on a fresh
# machine, build included (run_gpu.sh headline, GPU_BUDGET_S 560, the plan keeps what fits): the
# h200-* profiles' first measurement. On an H100: the SDK-vs-direct rerun with the fixed loadgen
# (clients made before the common start, anyio's backend imported before forking): F16 16 x 512,
# four interleaved rounds of aiohttp, httpx, SDK; then client_start.py on the host's CPUs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; lscpu | grep -i "model name"; nproc; nvidia-smi; } 2>&1 | tee $OUT/gpu.txt | head -3
echo "patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  GPU_BUDGET_S=560 benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[[0-9]*/" | grep -E "built|stamp|quantiz|written|skip|tok/s|tokens/s|^ *[0-9]+ |done|plan|sums" | tail -40
else
  BENCH_ONLY=h100-vibethinker BENCH_CELLS=16x512 BENCH_ARGS="--model f16 --rounds 4" GPU_BUDGET_S=470 \
    benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[[0-9]*/" | grep -E "built|skip|sums|done|x4" | tail -12
  export PYTHONPATH=/tmp/site:$PWD
  L=$(( 560 - (SECONDS - T0) ))
  [[ $L -gt 50 ]] && timeout $L python3 benchmarks/gpu_serving/client_start.py --rounds 4 --out $OUT/client-start-16x512.json 2>&1 | tail -8
fi
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s17a.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='cuda90.tar.xz.*' --exclude='results*.jsonl' --exclude='client-start*.json' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'cuda90.tar.xz.*' ! -name 'client-start*.json' -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
