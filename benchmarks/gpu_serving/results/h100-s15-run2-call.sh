#!/usr/bin/env bash
# Session 15, call 2, carrying call 1's packed build: one stream served on Q4_K_M (1 x 256, model
# card and top-k): llama.cpp's own sampling graphs for a one-row step (the default) against the
# batched op with teams (+op-always), each with llama.cpp's GGML_CUDA_GRAPH_OPT off and on, A-B-A;
# the engine alone for one sequence, GRAPH_OPT off/on; then BF16 (VibeThinker's own weight type)
# at 64 x 256 and 16 x 512, model card and top-k, as time allows.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=${END:-560}
left() { echo $((END - (SECONDS - T0))); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; lscpu | grep -i "model name"; nproc; nvidia-smi; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; commit $(cat .gpu/commit)"
benchmarks/gpu_serving/run_gpu.sh setup q4 2>&1 | tee $OUT/stdout-setup.txt | grep -v "^\[[0-9]*/" | tail -6
echo "== setup done (t=$((SECONDS-T0)))"
P=$PWD/.gpu-build/cuda90/bin; export LD_LIBRARY_PATH=$PWD/.gpu-build/cuda90/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
M=$PWD/.gpu-build/models
for g in "" 1 ""; do
  GGML_CUDA_GRAPH_OPT=$g timeout 20 $P/llama-batched-bench -m $M/vt-q4_k_m.gguf -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -npp 40 -ntg 128 -npl 1 2>&1 \
    | grep -E "^\|" | tail -1 | sed "s/^/q4_k_m GRAPH_OPT=${g:-0} /" | tee -a $OUT/engine.md
done
echo "== engine done (t=$((SECONDS-T0)))"
run() {  # step graph_opt only cells model
  local l; l=$(left); [[ $l -lt 40 ]] && { echo "no time for $1 (left $l s)"; return; }
  GGML_CUDA_GRAPH_OPT=$2 BENCH_ONLY=$3 BENCH_CELLS=$4 BENCH_ARGS="--model $5" GPU_BUDGET_S=$l \
    benchmarks/gpu_serving/run_gpu.sh quick 2>&1 | tee -a $OUT/stdout-quick.txt | grep -v "^\[" | grep -E 'tok|skip|x256|x512' | tail -8
  [[ -f $OUT/results.jsonl ]] && python3 -c 'import json,sys
for line in open(sys.argv[1]):
    row = json.loads(line); row["call_step"] = sys.argv[2]; row["GGML_CUDA_GRAPH_OPT"] = sys.argv[3] or None
    print(json.dumps(row))' $OUT/results.jsonl "$1" "$2" >>$OUT/results-s15b.jsonl && rm $OUT/results.jsonl
  echo "== $1 done (t=$((SECONDS-T0)))"
}
ONE=$F-vibethinker,$F-vibethinker+op-always,$F-vibethinker-topk,$F-vibethinker-topk+op-always
run one-a "" $ONE 1x256 q4_k_m
run one-graphopt-b 1 $ONE 1x256 q4_k_m
run one-c "" $ONE 1x256 q4_k_m
run one-graphopt-d 1 $ONE 1x256 q4_k_m
run bf16 "" $F-vibethinker,$F-vibethinker-topk 64x256,16x512 bf16
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s15b.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='results*.jsonl' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'engine.md' -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
