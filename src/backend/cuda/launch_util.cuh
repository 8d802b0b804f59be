// Small helpers shared by the kernel files: grid sizing and warp reductions.
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

}  // namespace osprey::backend::cuda
