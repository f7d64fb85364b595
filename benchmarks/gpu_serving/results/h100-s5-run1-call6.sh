#!/usr/bin/env bash
# Session 5, call 1: the documented headline plan on a fresh machine, build included
# (benchmarks/gpu_serving/README.md, "2. The headline"). Carries .gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nvidia-smi; date -u; } 2>&1 | tee $OUT/gpu.txt | head -3
GPU_BUDGET_S=560 benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[" | tail -45
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call6.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz . && mv /tmp/text.tgz text.tgz && ls -la "$OUT"
