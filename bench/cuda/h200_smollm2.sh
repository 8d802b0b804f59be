#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1 on the H200: greedy outputs of the CUDA backend against the CPU backend for 5 prompts,
# then the OpenAI server suite (tests/server) against `osprey serve --device cuda`. The model travels in two parts
# (the transfer limit): /tmp/smol.part1 (left by an earlier call) and .devcarry4/smol.part2; the openai client as
# wheels in .whl. Binaries as in h200_llama8b.sh (.devcarry). Results under $OUT.
set -u -o pipefail
C=${C:-.devcarry}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/models
. "$(dirname "$0")/device_env.sh"
S=/tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf
cat ${SMOL_PARTS:-/tmp/smol.part1 .devcarry4/smol.part2} > $S
sha256sum $S | cut -c1-16
prompts=("The capital of France is" "Write a haiku about the sea." "def fibonacci(n):" \
         "Explain why the sky is blue in one sentence." "List three prime numbers:")
n_same=0
[ "${SKIP_GREEDY:-0}" = 1 ] && prompts=()
for i in "${!prompts[@]}"; do
  for dev in cuda cpu; do
    $C/osprey run -m $S --device $dev -p "${prompts[$i]}" -n 64 --chat > "$OUT/smol_${dev}_$i.txt" 2> "$OUT/smol_${dev}_$i.log"
  done
  if cmp -s "$OUT/smol_cuda_$i.txt" "$OUT/smol_cpu_$i.txt"; then n_same=$((n_same + 1)); echo "prompt $i: equal";
  else echo "prompt $i: DIFFERENT"; diff "$OUT/smol_cuda_$i.txt" "$OUT/smol_cpu_$i.txt" | head -6; fi
done
echo "greedy CUDA == CPU for $n_same of ${#prompts[@]} prompts"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
  OSPREY_BINARY=$(realpath $C/osprey) OSPREY_MODEL_CACHE=/tmp/models OSPREY_SERVE_ARGS="${SERVE_ARGS:---device cuda --gpu-memory-utilization 0.2}" PYTHONUNBUFFERED=1 \
    timeout ${SUITE_TIMEOUT:-480} python3 -m pytest -q -rs tests/server/test_openai_server.py > "$OUT/server_suite.txt" 2>&1
  echo "server suite rc=$?"; tail -15 "$OUT/server_suite.txt"
fi
