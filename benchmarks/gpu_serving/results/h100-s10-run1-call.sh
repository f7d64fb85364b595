#!/usr/bin/env bash
# Session 10, call 1 (carries the build of session 9, stamp bdff4521d83d: patches 0001-0003 before
# patch 0002 gained its two /metrics step counters, which do not touch decoding or sampling).
# On an H200: plan headline with the h200-* profiles. On an H100: the engine alone (no server, no
# sampling) on Q8_0, Q4_K_M and F16 at 1/16/64 sequences, then one server's model-card and top-k
# profiles at 64x256, 1x256, 16x512 on Q8_0 and Q4_K_M in turn (ABAB), to see whether another
# quantization wins the targets.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nvidia-smi; date -u; nproc; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
M=.gpu-build/models; P=.gpu-build/cuda90/bin
if [[ $F == h200 ]]; then
  export BENCH_ONLY=$F-vibethinker,$F-vibethinker-topk,$F-vibethinker-mps-topk,$F-vibethinker+stock-sampling
  GPU_BUDGET_S=450 benchmarks/gpu_serving/run_gpu.sh setup headline 2>&1 | tee $OUT/stdout.txt | grep -v "^\[" | tail -40
  mv $OUT/results.jsonl $OUT/results-headline.jsonl 2>/dev/null
else
  benchmarks/gpu_serving/run_gpu.sh setup q4 2>&1 | tee $OUT/stdout-setup.txt | grep -v "^\[" | tail -8
  echo "== setup done (t=$((SECONDS-T0)))"
  for q in q8_0 q4_k_m f16; do
    echo "== engine $q"
    $P/llama-batched-bench -m $M/vt-$q.gguf -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -npp 40 -ntg 128 -npl 1,16,32,64 2>&1 \
      | grep -E "^\|" | sed "s/^/$q /" | tee -a $OUT/engine.md
  done
  echo "== engine done (t=$((SECONDS-T0)))"
  for q in q8_0 q4_k_m q8_0 q4_k_m; do
    left=$((450 - (SECONDS - T0))); [[ $left -lt 70 ]] && { echo "no time for $q (left $left s)"; break; }
    BENCH_ONLY=$F-vibethinker,$F-vibethinker-topk BENCH_CELLS=64x256,1x256,16x512 BENCH_ARGS="--model $q" GPU_BUDGET_S=$left \
      benchmarks/gpu_serving/run_gpu.sh quick 2>&1 | tee -a $OUT/stdout-quick.txt | grep -v "^\[" | grep -E 'tok|skip|x256|x512' | tail -12
    echo "== $q done (t=$((SECONDS-T0)))"
  done
fi
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s10a.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'engine.md' ! -name text.tgz -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
