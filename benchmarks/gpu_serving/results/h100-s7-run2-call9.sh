#!/usr/bin/env bash
# Session 7, call 2: on the machine of call 1 if still warm (else setup builds first). The step
# probe (patch 0003's hand-off vs LLAMA_TASK_WAKEUP=0, same build; --threads 8), then 3 more
# interleaved SDK-vs-direct rounds, then the model-card MPS profile both ways. Carries .gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; } 2>&1 | tee $OUT/gpu.txt | head -2
cp .gpu/s7/0003-*.patch server/llama/patches/ && cp .gpu/s7/configs.py .gpu/s7/step_probe.py benchmarks/gpu_serving/
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
ls .gpu-build/cuda90/ -a | grep built; ls .gpu-build/models 2>&1
mkdir -p $OUT/setup && OUT=$OUT/setup GPU_BUDGET_S=560 benchmarks/gpu_serving/run_gpu.sh setup 2>&1 | tail -3
echo "== probe (t=$((SECONDS-T0)))"
L=/tmp/lcp/vendor/llama.cpp
gcc -O2 -Wall -shared -fPIC -o /tmp/step_probe.so benchmarks/gpu_serving/step_probe.c -ldl -lrt -I$L/include -I$L/ggml/include || exit 1
export PYTHONPATH="/tmp/site:$PWD:$PWD/server/src:$PWD/benchmarks/gpu_serving:$L/gguf-py:/tmp/lcp"
export VIBESDK_LLAMA_SERVER=$PWD/.gpu-build/cuda90/bin/llama-server
python3 benchmarks/gpu_serving/step_probe.py run --models .gpu-build/models --out /tmp/probe --probe /tmp/step_probe.so \
  --only 0,1,2,5,9,10,11,12 --deadline-s $((440 - (SECONDS - T0))) 2>&1 | tee $OUT/probe-stdout.txt | grep -v "^  \|^$" | cut -c1-300
cp /tmp/probe/steps.jsonl /tmp/probe/stacks.txt $OUT/ 2>/dev/null
echo "== SDK vs direct (t=$((SECONDS-T0)))"
mkdir -p $OUT/sdk && OUT=$OUT/sdk BENCH_ONLY=$F-vibethinker BENCH_CELLS=64x256 GPU_BUDGET_S=$((555 - (SECONDS - T0))) \
  benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | grep -v "^\[" | tail -12
echo "== MPS model card (t=$((SECONDS-T0)))"
mkdir -p $OUT/mps && OUT=$OUT/mps BENCH_ONLY=$F-vibethinker-mps,$F-vibethinker-mps+stock-handoff GPU_BUDGET_S=$((575 - (SECONDS - T0))) \
  benchmarks/gpu_serving/run_gpu.sh headline 2>&1 | grep -v "^\[" | tail -12
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call9.sh $OUT/
(cd /tmp/probe && find . \( -name 'probe.*' -o -name 'metrics.txt' -o -name '*.log' -o -name 'gpu-util.csv' \) ! -name '*.stacks' -size -3M -print0 | xargs -0 tar -czf $OUT/probe-files.tgz)
cd "$OUT" && tar -czf /tmp/text.tgz --exclude=probe-files.tgz . && mv /tmp/text.tgz text.tgz && ls -la "$OUT"
