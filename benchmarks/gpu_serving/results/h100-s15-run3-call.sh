#!/usr/bin/env bash
# Session 15, call 3 (same warm machine as calls 1-2): F16 against BF16 side by side, A-B-A-B,
# model card and top-k profiles at 64 x 256 and 16 x 512, warm servers.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS; END=${END:-200}
left() { echo $((END - (SECONDS - T0))); }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee $OUT/gpu.txt; date -u | tee -a $OUT/gpu.txt
run() {  # step model
  local l; l=$(left); [[ $l -lt 30 ]] && { echo "no time for $1 (left $l s)"; return; }
  BENCH_ONLY=h100-vibethinker,h100-vibethinker-topk BENCH_CELLS=64x256,16x512 BENCH_ARGS="--model $2" GPU_BUDGET_S=$l \
    benchmarks/gpu_serving/run_gpu.sh quick >>$OUT/stdout-quick.txt 2>&1
  [[ -f $OUT/results.jsonl ]] && python3 -c 'import json,sys
for line in open(sys.argv[1]):
    row = json.loads(line); row["call_step"] = sys.argv[2]
    print(json.dumps(row))' $OUT/results.jsonl "$1" >>$OUT/results-s15d.jsonl && rm $OUT/results.jsonl
  echo "== $1 done (t=$((SECONDS-T0)))"
}
run f16-a f16; run bf16-b bf16; run f16-c f16; run bf16-d bf16
cp .gpu/call-s15d.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='results*.jsonl' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' -delete; mv /tmp/text.tgz text.tgz
