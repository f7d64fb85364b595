#!/usr/bin/env bash
# Session 11, call 1: build patches 0001-0003 with patch 0002's block clusters (a team of up to
# 8 blocks per row on Hopper) and pack it; vibe-sample-rows-check against llama.cpp's samplers
# with teams forced to 8 blocks (the check's 64- and 500-row batches would otherwise get 1-2);
# the op's time per launch, teams automatic against one block per row (TEAM=1); then served,
# F16, one server: model card and top-k at 16x512, 64x256, 16x512 with teams automatic, TEAM=1,
# automatic (ABA); one stream with the op forced (+op-always) against the stock graphs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=565
left() { echo $((END - (SECONDS - T0))); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nvidia-smi; date -u; nproc; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; patches: $(ls server/llama/patches); commit $(cat .gpu/commit)"
benchmarks/gpu_serving/run_gpu.sh setup pack 2>&1 | tee $OUT/stdout-setup.txt | grep -v "^\[" | tail -6
echo "== setup+pack done (t=$((SECONDS-T0)))"
P=$PWD/.gpu-build/cuda90/bin; export LD_LIBRARY_PATH=$PWD/.gpu-build/cuda90/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ls $P | tr '\n' ' '; echo
{ echo "== check, GGML_CUDA_SAMPLE_ROWS_TEAM=8, vocab 16384"; GGML_CUDA_SAMPLE_ROWS_TEAM=8 timeout 70 $P/vibe-sample-rows-check check --vocab 16384 --draws 8000; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "FAIL|passed|rc |=="
echo "== check done (t=$((SECONDS-T0)))"
for team in "" 1; do
  { echo "== bench TEAM=${team:-auto}"; GGML_CUDA_SAMPLE_ROWS_TEAM=$team timeout 45 $P/vibe-sample-rows-check bench; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "CUDA|rc "
done
echo "== bench done (t=$((SECONDS-T0)))"
run() {  # name team only cells
  local l; l=$(left); [[ $l -lt 40 ]] && { echo "no time for $1 (left $l s)"; return; }
  GGML_CUDA_SAMPLE_ROWS_TEAM=$2 BENCH_ONLY=$3 BENCH_CELLS=$4 BENCH_ARGS="--model f16" GPU_BUDGET_S=$l \
    benchmarks/gpu_serving/run_gpu.sh quick 2>&1 | tee -a $OUT/stdout-quick.txt | grep -v "^\[" | grep -E 'tok|skip|x256|x512' | tail -8
  [[ -f $OUT/results.jsonl ]] && python3 -c 'import json,sys
for line in open(sys.argv[1]):
    row = json.loads(line); row["call_step"] = sys.argv[2]; row["GGML_CUDA_SAMPLE_ROWS_TEAM"] = sys.argv[3] or None
    print(json.dumps(row))' $OUT/results.jsonl "$1" "$2" >>$OUT/results-s11a.jsonl && rm $OUT/results.jsonl
  echo "== $1 done (t=$((SECONDS-T0)))"
}
PAIR=$F-vibethinker,$F-vibethinker-topk
run teams-a "" $PAIR 16x512,64x256,16x512
run team1-b 1 $PAIR 16x512,64x256,16x512
run teams-c "" $PAIR 16x512,64x256,16x512
run one-stream "" $F-vibethinker-topk,$F-vibethinker-topk+op-always,$F-vibethinker,$F-vibethinker+op-always 1x256,1x256
if [[ $(left) -gt 60 ]]; then
  { echo "== check, GGML_CUDA_SAMPLE_ROWS_TEAM=3, vocab 8192"; GGML_CUDA_SAMPLE_ROWS_TEAM=3 timeout 50 $P/vibe-sample-rows-check check --draws 8000; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "FAIL|passed|rc |=="
fi
if [[ $(left) -gt 50 ]]; then
  for team in "" 1; do
    { echo "== bench TEAM=${team:-auto} sigma 0.5"; GGML_CUDA_SAMPLE_ROWS_TEAM=$team timeout 20 $P/vibe-sample-rows-check bench --sigma 0.5; echo "rc $?"; } 2>&1 | tee -a $OUT/sample-rows.txt | grep -E "CUDA|rc "
  done
fi
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s11a.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='cuda90.tar.xz.*' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'sample-rows.txt' ! -name 'cuda90.tar.xz.*' ! -name text.tgz -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
