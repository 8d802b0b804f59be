// Device-side dequantization of GGUF/ggml blocks (layouts of core/quant_blocks.h, shared with the CPU backend).
// dequant8<DT>(row, g, w) writes elements [8g, 8g + 8) of a weight row of dtype DT as f32: every block size
// (32, 256) is a multiple of 8 and every 8-group lies in one sub-block with one scale, so one function per
// dtype serves the matrix-vector kernels, the dequantize-to-f16 pass before cuBLAS and the embedding gather.
// The arithmetic mirrors backend/cpu/quant_ref.cpp (d * q, or d * sc * q - dmin * m in f32).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/quant_blocks.h"

namespace osprey::backend::cuda {

__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf2f(uint16_t b) { return __uint_as_float(uint32_t(b) << 16); }

// 16-bit loads from blocks whose fp16 fields are only 2-byte aligned.
__device__ __forceinline__ uint16_t ld16(const uint16_t* p) { return *p; }

__device__ __forceinline__ void get_scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Element e of a plain (F32/F16/BF16) row.
template <DType DT>
__device__ __forceinline__ float load1(const uint8_t* row, int64_t e) {
    if constexpr (DT == DType::F32) return reinterpret_cast<const float*>(row)[e];
    else if constexpr (DT == DType::F16) return h2f(reinterpret_cast<const uint16_t*>(row)[e]);
    else return bf2f(reinterpret_cast<const uint16_t*>(row)[e]);
}

template <DType DT>
__device__ __forceinline__ void dequant8(const uint8_t* row, int64_t g, float* w) {
    if constexpr (DT == DType::F32 || DT == DType::F16 || DT == DType::BF16) {
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = load1<DT>(row, 8 * g + i);
    } else if constexpr (DT == DType::Q8_0) {
        const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + g / 4;
        const int o = int(g % 4) * 8;
        const float d = h2f(ld16(&b->d));
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = float(b->qs[o + i]) * d;
    } else if constexpr (DT == DType::Q4_0 || DT == DType::Q4_1) {
        using B = std::conditional_t<DT == DType::Q4_0, BlockQ4_0, BlockQ4_1>;
        const B* b = reinterpret_cast<const B*>(row) + g / 4;
        const int sub = int(g % 4);  // 0, 1: low nibbles of qs[0..16); 2, 3: high nibbles
        const uint8_t* q = b->qs + (sub & 1) * 8;
        const int shift = (sub >> 1) * 4;
        const float d = h2f(ld16(&b->d));
        if constexpr (DT == DType::Q4_0) {
#pragma unroll
            for (int i = 0; i < 8; i++) w[i] = float(((q[i] >> shift) & 0xF) - 8) * d;
        } else {
            const float m = h2f(ld16(&b->m));
#pragma unroll
            for (int i = 0; i < 8; i++) w[i] = float((q[i] >> shift) & 0xF) * d + m;
        }
    } else if constexpr (DT == DType::Q5_0 || DT == DType::Q5_1) {
        using B = std::conditional_t<DT == DType::Q5_0, BlockQ5_0, BlockQ5_1>;
        const B* b = reinterpret_cast<const B*>(row) + g / 4;
        const int e0 = int(g % 4) * 8;  // element within the block
        const uint32_t qh = uint32_t(b->qh[0]) | uint32_t(b->qh[1]) << 8 | uint32_t(b->qh[2]) << 16 |
                            uint32_t(b->qh[3]) << 24;
        const float d = h2f(ld16(&b->d));
        float m = 0.0f;
        if constexpr (DT == DType::Q5_1) m = h2f(ld16(&b->m));
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = e0 + i;
            const int lo = e < 16 ? (b->qs[e] & 0xF) : (b->qs[e - 16] >> 4);
            const int v = lo | int((qh >> e) & 1) << 4;
            if constexpr (DT == DType::Q5_0) w[i] = float(v - 16) * d;
            else w[i] = float(v) * d + m;
        }
    } else if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
        using B = std::conditional_t<DT == DType::Q4_K, BlockQ4_K, BlockQ5_K>;
        const B* b = reinterpret_cast<const B*>(row) + g / 32;
        const int e0 = int(g % 32) * 8;            // element in the super-block
        const int j = e0 / 64, hi = (e0 / 32) & 1;  // 64-chunk, low/high nibble half
        const int l0 = e0 % 32;
        int sc, m;
        get_scale_min_k4(2 * j + hi, b->scales, sc, m);
        const float dl = h2f(ld16(&b->d)) * float(sc), ml = h2f(ld16(&b->dmin)) * float(m);
        const uint8_t* q = b->qs + 32 * j + l0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = hi ? (q[i] >> 4) : (q[i] & 0xF);
            if constexpr (DT == DType::Q5_K) v += (b->qh[l0 + i] >> (2 * j + hi)) & 1 ? 16 : 0;
            w[i] = dl * float(v) - ml;
        }
    } else if constexpr (DT == DType::Q6_K) {
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(row) + g / 32;
        const int e0 = int(g % 32) * 8;
        const int n = e0 / 128, r = e0 % 128, quarter = r / 32, l0 = r % 32;
        const uint8_t* ql = b->ql + 64 * n + (quarter & 1) * 32 + l0;
        const uint8_t* qh = b->qh + 32 * n + l0;
        const int lshift = (quarter >> 1) * 4, hshift = quarter * 2;
        const float d = h2f(ld16(&b->d)) * float(b->scales[8 * n + l0 / 16 + 2 * quarter]);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int v = (((ql[i] >> lshift) & 0xF) | (((qh[i] >> hshift) & 3) << 4)) - 32;
            w[i] = d * float(v);
        }
    } else if constexpr (DT == DType::Q2_K) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(row) + g / 32;
        const int e0 = int(g % 32) * 8;
        const int n = e0 / 128, r = e0 % 128, s = r / 32, half = (r % 32) / 16, l0 = r % 16;
        const uint8_t sc = b->scales[8 * n + 2 * s + half];
        const float dl = h2f(ld16(&b->d)) * float(sc & 0xF), ml = h2f(ld16(&b->dmin)) * float(sc >> 4);
        const uint8_t* q = b->qs + 32 * n + 16 * half + l0;
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = dl * float((q[i] >> (2 * s)) & 3) - ml;
    } else if constexpr (DT == DType::Q3_K) {
        const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(row) + g / 32;
        const int e0 = int(g % 32) * 8;
        const int n = e0 / 128, r = e0 % 128, s = r / 32, half = (r % 32) / 16, l0 = r % 16;
        const int is = 8 * n + 2 * s + half;  // 16-element group 0..15
        const int lo = is < 8 ? (b->scales[is] & 0xF) : (b->scales[is - 8] >> 4);
        const int hs = (b->scales[8 + (is % 4)] >> (2 * (is / 4))) & 3;
        const float dl = h2f(ld16(&b->d)) * float((lo | (hs << 4)) - 32);
        const uint8_t m = uint8_t(1u << (4 * n + s));
        const uint8_t* q = b->qs + 32 * n + 16 * half + l0;
        const uint8_t* hm = b->hmask + 16 * half + l0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int v = ((q[i] >> (2 * s)) & 3) - ((hm[i] & m) ? 0 : 4);
            w[i] = dl * float(v);
        }
    }
}

// The weight dtypes dequant8 handles.
inline bool kernel_weight_dtype(DType dt) {
    switch (dt) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

// Calls f.template operator()<DT>() for a weight dtype the kernels support; returns false for any other.
template <typename F>
bool dispatch_weight_dtype(DType dt, F&& f) {
    switch (dt) {
        case DType::F32: f.template operator()<DType::F32>(); return true;
        case DType::F16: f.template operator()<DType::F16>(); return true;
        case DType::BF16: f.template operator()<DType::BF16>(); return true;
        case DType::Q4_0: f.template operator()<DType::Q4_0>(); return true;
        case DType::Q4_1: f.template operator()<DType::Q4_1>(); return true;
        case DType::Q5_0: f.template operator()<DType::Q5_0>(); return true;
        case DType::Q5_1: f.template operator()<DType::Q5_1>(); return true;
        case DType::Q8_0: f.template operator()<DType::Q8_0>(); return true;
        case DType::Q2_K: f.template operator()<DType::Q2_K>(); return true;
        case DType::Q3_K: f.template operator()<DType::Q3_K>(); return true;
        case DType::Q4_K: f.template operator()<DType::Q4_K>(); return true;
        case DType::Q5_K: f.template operator()<DType::Q5_K>(); return true;
        case DType::Q6_K: f.template operator()<DType::Q6_K>(); return true;
        default: return false;
    }
}

}  // namespace osprey::backend::cuda
