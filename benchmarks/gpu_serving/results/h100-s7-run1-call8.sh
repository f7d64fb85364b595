#!/usr/bin/env bash
# Session 7, call 1: build with patches 0001 + 0002 + 0003 (0003 and benchmarks/gpu_serving/configs.py
# copied over the shipped tree from .gpu/s7), then plan headline for the model-card, top-k and MPS
# top-k profiles, each also as NAME+stock-handoff (LLAMA_TASK_WAKEUP=0: the stock result hand-off,
# same build), and SDK vs direct (3 + 3 interleaved). Carries .gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nvidia-smi; date -u; nproc; } 2>&1 | tee $OUT/gpu.txt | head -3
cp .gpu/s7/0003-*.patch server/llama/patches/ && cp .gpu/s7/configs.py benchmarks/gpu_serving/configs.py
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; patches: $(ls server/llama/patches)"
export BENCH_ONLY=$F-vibethinker,$F-vibethinker+stock-handoff,$F-vibethinker-topk,$F-vibethinker-topk+stock-handoff,$F-vibethinker-mps-topk,$F-vibethinker-mps-topk+stock-handoff
GPU_BUDGET_S=555 benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[" | tail -45
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call8.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz . && mv /tmp/text.tgz text.tgz && ls -la "$OUT"
