#!/usr/bin/env bash
# Session 12, call 1: build patches 0001-0003 (patch 0002 with the fixed cluster occupancy query,
# teams opt-in), quantize Q4_K_M, pack the build; the op's check with teams of 8 blocks per row;
# the op's time per launch, teams automatic against one block per row; the engine alone on F16
# (session 10's llama-batched-bench command, to compare hosts); served, F16, one server, model
# card and top-k at 16x512 and 64x256 with TEAM=auto, 1, auto (ABA); as time allows,
# llama.cpp's GGML_CUDA_GRAPH_OPT=1 off/on, the check with teams of 3, the op's time at sigma 0.5.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=${END:-520}
left() { echo $((END - (SECONDS - T0))); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; lscpu | grep -i "model name"; nproc; nvidia-smi; nvidia-smi -q -d CLOCK,POWER,PERFORMANCE 2>&1 | head -120; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
benchmarks/gpu_serving/run_gpu.sh setup q4 pack 2>&1 | tee $OUT/stdout-setup.txt | grep -v "^\[" | tail -4
echo "== setup+pack done (t=$((SECONDS-T0)))"
P=$PWD/.gpu-build/cuda90/bin; export LD_LIBRARY_PATH=$PWD/.gpu-build/cuda90/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
{ echo "== check, GGML_CUDA_SAMPLE_ROWS_TEAM=8, vocab 16384"; GGML_CUDA_SAMPLE_ROWS_TEAM=8 timeout 50 $P/vibe-sample-rows-check check --vocab 16384 --draws 8000; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "FAIL|passed|rc |==|luster"
echo "== check done (t=$((SECONDS-T0)))"
for team in auto 1; do
  { echo "== bench TEAM=$team"; GGML_CUDA_SAMPLE_ROWS_TEAM=$team timeout 25 $P/vibe-sample-rows-check bench; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "CUDA|rc |luster"
done
echo "== bench done (t=$((SECONDS-T0)))"
# the engine alone, session 10's command on F16: is this host's decode rate the one session 10 measured?
M=$PWD/.gpu-build/models
timeout 40 $P/llama-batched-bench -m $M/vt-f16.gguf -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -npp 40 -ntg 128 -npl 1,16,64 2>&1 \
  | grep -E "^\|" | sed "s/^/f16 /" | tee -a $OUT/engine.md
echo "== engine done (t=$((SECONDS-T0)))"
run() {  # name team only cells
  local l; l=$(left); [[ $l -lt 40 ]] && { echo "no time for $1 (left $l s)"; return; }
  GGML_CUDA_SAMPLE_ROWS_TEAM=$2 BENCH_ONLY=$3 BENCH_CELLS=$4 BENCH_ARGS="--model f16" GPU_BUDGET_S=$l \
    benchmarks/gpu_serving/run_gpu.sh quick 2>&1 | tee -a $OUT/stdout-quick.txt | grep -v "^\[" | grep -E 'tok|skip|x256|x512' | tail -8
  [[ -f $OUT/results.jsonl ]] && python3 -c 'import json,sys
for line in open(sys.argv[1]):
    row = json.loads(line); row["call_step"] = sys.argv[2]; row["GGML_CUDA_SAMPLE_ROWS_TEAM"] = sys.argv[3] or None
    print(json.dumps(row))' $OUT/results.jsonl "$1" "$2" >>$OUT/results-s12a.jsonl && rm $OUT/results.jsonl
  echo "== $1 done (t=$((SECONDS-T0)))"
}
PAIR=$F-vibethinker,$F-vibethinker-topk
run teams-a auto $PAIR 16x512,64x256
run team1-b 1 $PAIR 16x512,64x256
run teams-c auto $PAIR 16x512,64x256
# llama.cpp's opt-in graph optimization (GGML_CUDA_GRAPH_OPT=1: independent nodes on concurrent
# streams) for one sequence on Q4_K_M and 64 on F16, off then on
if [[ $(left) -gt 30 ]]; then
  for g in "" 1; do
    GGML_CUDA_GRAPH_OPT=$g timeout 20 $P/llama-batched-bench -m $M/vt-q4_k_m.gguf -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -npp 40 -ntg 128 -npl 1 2>&1 \
      | grep -E "^\|" | tail -1 | sed "s/^/q4_k_m GRAPH_OPT=${g:-0} /" | tee -a $OUT/engine.md
    GGML_CUDA_GRAPH_OPT=$g timeout 20 $P/llama-batched-bench -m $M/vt-f16.gguf -ngl 99 -fa on -c 131072 -b 2048 -ub 512 -npp 40 -ntg 128 -npl 64 2>&1 \
      | grep -E "^\|" | tail -1 | sed "s/^/f16 GRAPH_OPT=${g:-0} /" | tee -a $OUT/engine.md
  done
fi
if [[ $(left) -gt 50 ]]; then
  { echo "== check, GGML_CUDA_SAMPLE_ROWS_TEAM=3, vocab 8192"; GGML_CUDA_SAMPLE_ROWS_TEAM=3 timeout 40 $P/vibe-sample-rows-check check --draws 8000; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "FAIL|passed|rc |==|luster"
fi
if [[ $(left) -gt 40 ]]; then
  for team in auto 1; do
    { echo "== bench TEAM=$team sigma 0.5"; GGML_CUDA_SAMPLE_ROWS_TEAM=$team timeout 15 $P/vibe-sample-rows-check bench --sigma 0.5; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "CUDA|rc |luster"
  done
fi
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s12a.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='cuda90.tar.xz.*' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'sample-rows.txt' ! -name 'engine.md' ! -name 'cuda90.tar.xz.*' ! -name text.tgz -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
