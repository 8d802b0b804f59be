#!/usr/bin/env bash
# Runs the backend_ops suite on the GPU machine from a binary built here (bench/cuda/CMakeLists.txt) and carried
# in build-cuda/dev with the libfmt it links; then compute-sanitizer memcheck over a subset. Results under $OUT.
set -u -o pipefail
DEV=build-cuda/dev
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
export LD_LIBRARY_PATH=$PWD/$DEV:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
if ldd $DEV/test_backend_ops | grep -q "not found"; then
  for d in $(find / -xdev -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | sort -u); do
    export LD_LIBRARY_PATH=$d:$LD_LIBRARY_PATH
  done
fi
ldd $DEV/test_backend_ops | grep -E "not found|cublas|fmt"
start=$(date +%s)
OSPREY_BACKEND_OPS_REPORT=$OUT/report.txt timeout ${SUITE_TIMEOUT:-300} $DEV/test_backend_ops 2>&1 \
  | tee "$OUT/log.txt" | grep -E "FAILED|Failure|nmse|SKIPPED|PASSED|tests ran|Expected|Which is|error" | head -80
echo "suite rc=$? in $(( $(date +%s) - start )) s"
grep -c " yes$" "$OUT/report.txt"; grep " NO$" "$OUT/report.txt" | head -20
if [ "${MEMCHECK:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  start=$(date +%s)
  timeout ${MEMCHECK_TIMEOUT:-200} compute-sanitizer --tool memcheck --print-limit 20 $DEV/test_backend_ops \
    --gtest_filter='BackendOps.Rope:BackendOps.RmsNorm:BackendOps.Elementwise:BackendOps.KvWrite:BackendOps.EmbeddingAllTableTypes:BackendOps.GemvIsBatchInvariant:BackendOps.PagedAttentionIsBatchInvariant:*MatmulOps*' \
    > "$OUT/memcheck.txt" 2>&1
  echo "memcheck rc=$? in $(( $(date +%s) - start )) s"; grep -E "ERROR SUMMARY|Invalid|PASSED|FAILED" "$OUT/memcheck.txt" | head -20
fi
