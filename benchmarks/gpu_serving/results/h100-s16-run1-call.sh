#!/usr/bin/env bash
# Session 16, call 1: the documented headline plan on a fresh
# machine, build included, no pack: run_gpu.sh headline with GPU_BUDGET_S 560 (the plan keeps what fits).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; lscpu | grep -i "model name"; nproc; nvidia-smi; } 2>&1 | tee $OUT/gpu.txt | head -3
echo "patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
GPU_BUDGET_S=560 benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[[0-9]*/" | grep -E "built|stamp|quantiz|written|skip|tok/s|tokens/s|^ *[0-9]+ |done|plan" | tail -40
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s16a.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='cuda90.tar.xz.*' --exclude=results.jsonl . && find . -maxdepth 1 -type f ! -name 'results.jsonl' ! -name 'cuda90.tar.xz.*' -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
