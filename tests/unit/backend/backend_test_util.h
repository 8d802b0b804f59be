// Helpers shared by the backend tests: random data and quantized weights built with the reference quantizers.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace osprey::backend::testing {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Weights [n, k] of dtype. Types without a reference quantizer (Q2_K, Q3_K, Q5_K) get random bits with
// small fp16 scales, which exercises every code of their layouts.
inline std::vector<uint8_t> random_weights(DType dtype, int64_t n, int64_t k, uint32_t seed) {
    const size_t row_bytes = dtype_row_bytes(dtype, k);
    std::vector<uint8_t> w(row_bytes * size_t(n));
    if (cpu::quantize_supported(dtype)) {
        const std::vector<float> f = random_floats(size_t(n * k), seed);
        for (int64_t r = 0; r < n; r++) cpu::quantize_row_ref(dtype, f.data() + r * k, w.data() + r * row_bytes, k);
        return w;
    }
    std::mt19937 rng(seed);
    for (auto& b : w) b = uint8_t(rng());
    std::uniform_real_distribution<float> dist(0.001f, 0.02f);
    const int64_t nb = int64_t(w.size()) / dtype_traits(dtype).block_bytes;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t* blk = w.data() + b * dtype_traits(dtype).block_bytes;
        auto set = [&](size_t off) {
            const uint16_t h = fp32_to_fp16(dist(rng));
            std::memcpy(blk + off, &h, 2);
        };
        switch (dtype) {
            case DType::Q2_K: set(offsetof(BlockQ2_K, d)), set(offsetof(BlockQ2_K, dmin)); break;
            case DType::Q3_K: set(offsetof(BlockQ3_K, d)); break;
            case DType::Q5_K: set(offsetof(BlockQ5_K, d)), set(offsetof(BlockQ5_K, dmin)); break;
            default: break;
        }
    }
    return w;
}

// Every weight dtype the CPU backend multiplies with, and a K that suits its block size.
inline const std::vector<DType>& matmul_dtypes() {
    static const std::vector<DType> v = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                         DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                         DType::Q4_K, DType::Q5_K, DType::Q6_K};
    return v;
}

inline int64_t test_k(DType dtype) {
    const int64_t bs = dtype_traits(dtype).block_size;
    if (bs == 1) return 77;
    if (bs == 32) return 352;  // 11 blocks
    return 768;                // 3 super-blocks
}

}  // namespace osprey::backend::testing
