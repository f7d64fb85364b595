#!/usr/bin/env bash
# Session 16, call 2 (same warm machine as call 1, its build kept): the SDK against direct with six
# interleaved rounds each (model card, F16, 16 x 512); BF16 against F16 side by side (B-A-B), model
# card and top-k at 64 x 256 and 16 x 512; then one 64 x 256 cell with llama-server at verbosity 4
# (LLAMA_ARG_LOG_VERBOSITY=4) so the batched op's cluster-count line reaches the log.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
T0=$SECONDS
END=${END:-560}
left() { echo $((END - (SECONDS - T0))); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; date -u; nvidia-smi; } 2>&1 | tee $OUT/gpu.txt | head -3
F=h100; nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200 && F=h200
echo "family $F; commit $(cat .gpu/commit)"
run() {  # step plan only cells model-and-args
  local l; l=$(left); [[ $l -lt 40 ]] && { echo "no time for $1 (left $l s)"; return; }
  BENCH_ONLY=$3 BENCH_CELLS=$4 BENCH_ARGS="$5" GPU_BUDGET_S=$l \
    benchmarks/gpu_serving/run_gpu.sh $2 2>&1 | tee -a $OUT/stdout-$1.txt | grep -v "^\[" | grep -E 'tok|skip|x256|x512|sums' | tail -12
  [[ -f $OUT/results.jsonl ]] && python3 -c 'import json,sys
for line in open(sys.argv[1]):
    row = json.loads(line); row["call_step"] = sys.argv[2]
    print(json.dumps(row))' $OUT/results.jsonl "$1" >>$OUT/results-s16b.jsonl && rm $OUT/results.jsonl
  echo "== $1 done (t=$((SECONDS-T0)))"
}
run sdk-rounds6 headline $F-vibethinker 16x512 "--model f16 --rounds 6"
run bf16-a quick $F-vibethinker,$F-vibethinker-topk 64x256,16x512 "--model bf16"
run f16-b quick $F-vibethinker,$F-vibethinker-topk 64x256,16x512 "--model f16"
run bf16-c quick $F-vibethinker,$F-vibethinker-topk 64x256,16x512 "--model bf16"
rm -rf .gpu-build/logs/lv4; export LLAMA_ARG_LOG_VERBOSITY=4
run lv4 quick $F-vibethinker 64x256 "--model f16 --logs $PWD/.gpu-build/logs/lv4"
unset LLAMA_ARG_LOG_VERBOSITY
grep -rh "clusters resident\|team" .gpu-build/logs/lv4 2>/dev/null | sort | uniq -c | head -20 | tee $OUT/lv4-clusters.txt
echo "== done (t=$((SECONDS-T0)))"
cp .gpu/call-s16b.sh $OUT/
cd "$OUT" && tar -czf /tmp/text.tgz --exclude='results*.jsonl' . && find . -maxdepth 1 -type f ! -name 'results*.jsonl' ! -name 'lv4-clusters.txt' -delete; mv /tmp/text.tgz text.tgz; ls -la "$OUT"
