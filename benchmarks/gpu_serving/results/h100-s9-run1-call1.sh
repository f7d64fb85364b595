#!/usr/bin/env bash
# Session 9, call 1: build with patches 0001 + 0002 (with LLAMA_BATCHED_SAMPLING_MIN_ROWS: one
# sequence alone keeps the stock graphs) + 0003 and pack it, then plan headline on the GPU found
# (h200-* profiles on an H200) for the model-card, top-k and MPS top-k profiles and the model card
# with stock sampling, then one stream with the op forced (+op-always). Carries .gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nvidia-smi; date -u; nproc; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
export BENCH_ONLY=$F-vibethinker,$F-vibethinker-topk,$F-vibethinker-mps-topk,$F-vibethinker+stock-sampling
GPU_BUDGET_S=515 benchmarks/gpu_serving/run_gpu.sh setup pack headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[" | tail -40
echo "== headline done (t=$((SECONDS-T0)))"
mv $OUT/results.jsonl $OUT/results-headline.jsonl 2>/dev/null; mv $OUT/logs.tgz $OUT/logs-headline.tgz 2>/dev/null
left=$((575 - (SECONDS - T0)))
BENCH_ONLY=$F-vibethinker+op-always,$F-vibethinker-topk+op-always BENCH_CELLS=1x256 GPU_BUDGET_S=$left \
  benchmarks/gpu_serving/run_gpu.sh quick 2>&1 | tee $OUT/stdout-quick.txt | grep -v "^\[" | tail -12
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call1.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='cuda90.tar.xz.*' . && find . -maxdepth 1 -type f ! -name 'cuda90.tar.xz.*' ! -name 'results*.jsonl' -delete && mv /tmp/text.tgz text.tgz; ls -la "$OUT"
