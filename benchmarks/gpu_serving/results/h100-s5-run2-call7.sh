#!/usr/bin/env bash
# Session 5, call 2: where the 64-stream served step's time goes. On the machine of call 1 (its
# build and model are reused; on a fresh one `setup` builds first). The engine alone at the
# profile's KV size, then llama-server with step_probe.so preloaded, one variant per server.
# Carries .gpu (step_probe.c and step_probe.py are copies of benchmarks/gpu_serving's).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=${END:-560}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u
  echo "nsys: $(command -v nsys || echo none)"; ls -d /opt/nvidia/nsight* 2>&1; } | tee $OUT/gpu.txt
ls -la .gpu-build/cuda90/bin .gpu-build/models 2>&1 | tail -4
GPU_BUDGET_S=560 benchmarks/gpu_serving/run_gpu.sh setup 2>&1 | tail -4
P=.gpu-build/cuda90/bin; M=.gpu-build/models/vt-q8_0.gguf
echo "== engine, KV per sequence: -c 131072 (2,048 a sequence, as session 1) vs -c 1048576 (16,384, as the profile) (t=$((SECONDS-T0)))"
for c in 131072 1048576; do
  timeout 90 $P/llama-batched-bench -m $M -ngl 99 -fa on -c $c -b 2048 -ub 512 -npp 40 -ntg 128 -npl 16,32,64 2>&1 \
    | grep -E "^\|" | sed "s/^/c=$c /" | tee -a $OUT/engine.md
done
echo "== probe build (t=$((SECONDS-T0)))"
L=/tmp/lcp/vendor/llama.cpp
gcc -O2 -Wall -shared -fPIC -o /tmp/step_probe.so .gpu/step_probe.c -ldl -lrt -I$L/include -I$L/ggml/include || exit 1
export PYTHONPATH="/tmp/site:$PWD/src:$PWD/server/src:$PWD/benchmarks/gpu_serving:$L/gguf-py:/tmp/lcp"
export VIBESDK_LLAMA_SERVER=$PWD/$P/llama-server
echo "== served variants (t=$((SECONDS-T0)))"
python3 .gpu/step_probe.py run --models .gpu-build/models --out /tmp/probe --probe /tmp/step_probe.so \
  --deadline-s $((END - 25 - (SECONDS - T0))) 2>&1 | tee $OUT/probe-stdout.txt | grep -v "^  \|^$" | cut -c1-330
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call7.sh $OUT/; cp /tmp/probe/steps.jsonl /tmp/probe/stacks.txt $OUT/ 2>/dev/null
mkdir -p /tmp/probe-small && (cd /tmp/probe && find . \( -name 'probe.*' -o -name 'metrics.txt' -o -name '*.log' -o -name 'gpu-util.csv' \) ! -name '*.stacks' -size -3M -print0 | xargs -0 tar -czf $OUT/probe-files.tgz)
cd "$OUT" && ls -la "$OUT"
