# Sourced by the bench/cuda/h200_*.sh scripts on the GPU machine: the carried shared libraries ($C/lib), the CUDA
# runtime and wherever that machine keeps cuBLAS on the library path, and step NAME (true when NAME is in $STEPS).
export LD_LIBRARY_PATH=$(realpath "$C")/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for d in $(find / -xdev -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | sort -u); do
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
step() { case " ${STEPS:-} " in *" $1 "*) return 0;; *) return 1;; esac; }
