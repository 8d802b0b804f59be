#!/bin/sh
# Builds bench/kernels/matmul_bench against the static libraries of an Osprey build directory (not in ctest).
# Usage: bench/kernels/build.sh [build-dir]   (default build-cpu; build target osprey_backend_cpu first)
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-cpu}
g++ -O3 -std=c++20 -I"$root/src" "$root/bench/kernels/matmul_bench.cpp" \
    "$build/libosprey_backend_cpu.a" "$build/libosprey_backend.a" "$build/libosprey_core.a" \
    -lfmt -lspdlog -pthread -o "$build/matmul_bench"
echo "$build/matmul_bench"
