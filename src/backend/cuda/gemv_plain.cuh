// Matrix-vector kernel for plain F32 / F16 / BF16 weights with rows of whole, aligned 16-byte vectors, used where
// rows are long (gemv_quant.cu: plain_block_rows; the down product of a Llama-3.1-8B, K = 14336).
//
// One block per weight row: each of its kPlainThreads threads reads the vectors t, t + T, ... of the row
// (T = kPlainThreads) with up to kPlainLoads 16-byte loads in flight (all of them issued before any is used;
// evict-first: the weights are read once per step), multiplies them with the matching f32 x elements and keeps one
// sum per x row; the sums are reduced over each warp (butterfly) and then over the block's warps in warp order. A
// 4096-row down product thus has 8 warps per row instead of one, and the SM about four times the bytes in flight of
// the one-warp-per-row kernel.
//
// Batch invariance: out[m, n] is the same fixed-order reduction over K (thread partials over v = t, t + T, ...,
// the butterfly, then warps 0..7) whatever M or the other rows of the launch are.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/gemv_quant.cuh"
#include "backend/cuda/launch_util.cuh"
#include "core/dtype.h"

namespace osprey::backend::cuda {

// Rows of several weights as one index space: global row g belongs to job j with first_row[j] <= g.
struct GemvBatch {
    const uint8_t* w[kMaxGemvJobs];
    float* out[kMaxGemvJobs];
    int64_t n[kMaxGemvJobs];
    int64_t first_row[kMaxGemvJobs + 1];
    int n_jobs;
};

// 16 bytes of a plain row as f32: 8 halves or 4 floats.
template <DType DT>
__device__ __forceinline__ void unpack16(const uint4& v, float* f) {
    if constexpr (DT == DType::F32) {
        f[0] = __uint_as_float(v.x), f[1] = __uint_as_float(v.y);
        f[2] = __uint_as_float(v.z), f[3] = __uint_as_float(v.w);
    } else {
        const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            if constexpr (DT == DType::F16) {
                const float2 p = __half22float2(*reinterpret_cast<const __half2*>(&u[i]));
                f[2 * i] = p.x, f[2 * i + 1] = p.y;
            } else {
                f[2 * i] = __uint_as_float(u[i] << 16), f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
            }
        }
    }
}

// acc[r] += the 16-byte vector v of a plain row (w) . x row r at the same elements, for r < n_rows: one fma per
// element in order (both plain GEMV kernels).
template <DType DT, int MR>
__device__ __forceinline__ void vec_fma(const uint4& w, const float* xr, int64_t K, int64_t v, int n_rows,
                                        float (&acc)[MR]) {
    constexpr int kPer = DT == DType::F32 ? 4 : 8;  // elements per 16-byte vector
    float wf[kPer];
    unpack16<DT>(w, wf);
#pragma unroll
    for (int r = 0; r < MR; r++) {
        if (r >= n_rows) break;
        const float4* xp = reinterpret_cast<const float4*>(xr + r * K + kPer * v);
#pragma unroll
        for (int h = 0; h < kPer / 4; h++) {
            const float4 a = __ldg(xp + h);
            acc[r] = fmaf(wf[4 * h], a.x, acc[r]);
            acc[r] = fmaf(wf[4 * h + 1], a.y, acc[r]);
            acc[r] = fmaf(wf[4 * h + 2], a.z, acc[r]);
            acc[r] = fmaf(wf[4 * h + 3], a.w, acc[r]);
        }
    }
}

constexpr int kPlainThreads = 256, kPlainWarps = kPlainThreads / 32;
constexpr int kPlainLoads = 8;  // 16-byte weight vectors in flight per thread

// Grid (weight rows, x row groups): out_j[m, n] = x[m] . w_j[n] for global row blockIdx.x of the batch's index space
// (GemvBatch), x rows m0 .. m0 + MR - 1.
template <DType DT, int MR>
__global__ void __launch_bounds__(kPlainThreads)
gemv_plain_kernel(GemvBatch b, const float* __restrict__ x, int64_t M, int64_t K, size_t row_bytes) {
    constexpr int kPer = DT == DType::F32 ? 4 : 8;  // elements per 16-byte vector
    __shared__ float part[kPlainWarps][MR];
    pdl_release();  // the next kernel may start its weight loads
    const int64_t g = blockIdx.x;
    if (g >= b.first_row[b.n_jobs]) return;
    int j = 0;
    while (g >= b.first_row[j + 1]) j++;
    const int64_t n = g - b.first_row[j];
    const uint4* row = reinterpret_cast<const uint4*>(b.w[j] + size_t(n) * row_bytes);
    const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t n_vec = K / kPer;
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    const float* xm = x + m0 * K;
    float acc[MR];
#pragma unroll
    for (int r = 0; r < MR; r++) acc[r] = 0.0f;
    bool waited = false;
    for (int64_t v0 = tid; v0 < n_vec; v0 += int64_t(kPlainThreads) * kPlainLoads) {
        uint4 wv[kPlainLoads];
#pragma unroll
        for (int u = 0; u < kPlainLoads; u++)
            if (v0 + kPlainThreads * u < n_vec) wv[u] = __ldcs(row + v0 + kPlainThreads * u);
        if (!waited) {  // x is written by the kernel before: the first weight loads are already on their way
            pdl_wait();
            waited = true;
        }
#pragma unroll
        for (int u = 0; u < kPlainLoads; u++) {
            const int64_t v = v0 + kPlainThreads * u;
            if (v >= n_vec) break;
            vec_fma<DT, MR>(wv[u], xm, K, v, n_rows, acc);
        }
    }
    if (!waited) pdl_wait();
#pragma unroll
    for (int r = 0; r < MR; r++) {
        const float s = warp_sum(acc[r]);
        if (lane == 0) part[warp][r] = s;
    }
    __syncthreads();
    if (tid < n_rows) {
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < kPlainWarps; w++) s += part[w][tid];
        b.out[j][(m0 + tid) * b.n[j] + n] = s;
    }
}

}  // namespace osprey::backend::cuda
