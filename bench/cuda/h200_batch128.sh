#!/usr/bin/env bash
# Batch-128 decode on one H200 (Llama-3.1-8B shape, bf16): the kernel timing tests under their tuning switches,
# then the synth model's batch-128 offline bench, with a per-op profile. Runs on the GPU machine from binaries
# carried in $C (osprey, test_backend_ops, lib/, llama3/; or $C/pack.tar.xz holding them). Results under $OUT.
#   STEPS="attn gemm synth profile batch128 ops" (default: all but ops)
#   ATTN_ENVS / GEMM_ENVS / BENCH_ENVS: space-separated env settings compared (',' joins several in one run)
set -u -o pipefail
C=${C:-.devcarry_b128}
if [ -f $C/pack.tar.xz ]; then mkdir -p /tmp/carry && tar xJf $C/pack.tar.xz -C /tmp/carry && C=/tmp/carry; fi
OUT=${OUT:-/tmp/out}
M=${MODEL_DIR:-/tmp/llama8b}
STEPS=${STEPS:-"attn gemm synth profile batch128"}
mkdir -p "$OUT"
. "$(dirname "$0")/device_env.sh"
with_env() { local e=$1; shift; env $(echo "$e" | tr ',' ' ') "$@"; }
if step ops; then run_backend_ops 300; fi
if step attn; then
  for e in ${ATTN_ENVS:-X=0}; do
    echo "== attention timing $e"
    with_env "$e" $C/test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*PagedAttentionTiming*' 2>&1 \
      | grep "decode" | tee -a "$OUT/attention_timing.txt"
  done
fi
if step gemm; then
  for e in ${GEMM_ENVS:-OSPREY_GEMM=blas OSPREY_GEMM=lt,OSPREY_GEMM_LOG=1}; do
    echo "== matmul timing $e" | tee -a "$OUT/matmul_timing.txt"
    with_env "$e" $C/test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*MatmulTiming*' 2>&1 \
      | grep -E "matmul|gemm tune" | grep -E "M=(16|32|64|128|256) |N=" >> "$OUT/matmul_timing.txt"
    grep -A100 "== matmul timing $e" "$OUT/matmul_timing.txt" | grep -E "^matmul" | grep -E "M=(64|128|256) " | head -15
  done
fi
if step synth; then
  s=$(date +%s)
  [ -f "$M/config.json" ] || $C/osprey synth --shape llama-3.1-8b --dtype bf16 --tokenizer $C/llama3 -o "$M" > "$OUT/synth.txt" 2>&1
  echo "synth rc=$? $(( $(date +%s) - s )) s"
fi
bench() {  # bench NAME ENV OUTPUT_LEN [flags]: the batch-128 offline bench
  local name=$1 e=$2 n=$3; shift 3
  with_env "$e" $C/osprey bench offline -m "$M" --device cuda --input-len 512 --output-len $n --num-prompts 128 \
    --max-num-seqs 128 --max-num-batched-tokens 8192 "$@" > "$OUT/$name.txt" 2>&1
  echo "$name ($e) rc=$?: $(grep -E "Decode-only|Output token" "$OUT/$name.txt" | tr '\n' ' ')"
}
tag() { echo "$1" | tr -c 'A-Za-z0-9_\n' '_' | cut -c1-50; }
if step profile; then  # per-op GPU time: 128 new tokens minus 1 (the prefill) = 127 decode steps
  for e in ${PROFILE_ENVS:-X=0}; do
    bench "profile1_$(tag $e)" "OSPREY_CUDA_PROFILE=1,$e" 1
    bench "profile128_$(tag $e)" "OSPREY_CUDA_PROFILE=1,$e" 128
  done
fi
if step batch128; then
  for e in ${BENCH_ENVS:-X=0}; do bench "batch128_$(tag $e)" "$e" 128; done
fi
