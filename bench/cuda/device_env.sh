# Sourced by the bench/cuda/h200_*.sh scripts on the GPU machine: the carried shared libraries ($C/lib), the CUDA
# runtime and wherever that machine keeps cuBLAS on the library path, and step NAME (true when NAME is in $STEPS).
export LD_LIBRARY_PATH=$(realpath "$C")/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for d in $(find / -xdev -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | sort -u); do
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
step() { case " ${STEPS:-} " in *" $1 "*) return 0;; *) return 1;; esac; }
# The per-op suite, all of it, into $OUT/backend_ops.txt (timeout in seconds as $1).
run_backend_ops() {
  local s=$(date +%s)
  timeout "${1:-300}" $C/test_backend_ops > "$OUT/backend_ops.txt" 2>&1
  echo "backend_ops rc=$? $(( $(date +%s) - s )) s: $(grep -E '^\[  (PASSED|FAILED) ' "$OUT/backend_ops.txt" | tr '\n' ' ')"
  grep -E "FAILED|Failure" -A4 "$OUT/backend_ops.txt" | head -30
}
