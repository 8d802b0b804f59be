// Small helpers shared by the kernel files: grid sizing, warp reductions and programmatic dependent launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

// Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 16).
inline unsigned grid_1d(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    constexpr int64_t kMax = int64_t(65535) * 16;
    return unsigned(blocks < 1 ? 1 : (blocks > kMax ? kMax : blocks));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Programmatic dependent launch (sm_90): a kernel launched with programmaticStreamSerializationAllowed may start
// while the kernel before it runs; pdl_wait() blocks until that kernel has finished and its writes are visible (a
// no-op in a plain launch). pdl_release() lets the next kernel, if it was launched so, start now: it must call
// pdl_wait() before it reads what this one writes.
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_release() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

}  // namespace osprey::backend::cuda
