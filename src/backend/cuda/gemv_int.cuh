// Integer dot products for the tiled block GEMV (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K). x is quantized once per launch
// (or once for the q/k/v launches of one x), row by row, to int16 per 32-element block: x ~ d * q with
// d = amax / 32767 and q = round_even(x / d) (relative error <= 2^-16 of the block's largest element, the precision
// of the CPU backend's two int8 terms), plus the integer sums of q over each 16-element half. A lane then takes one
// unit of a gemv_blocks.cuh tile (a Q8_0 / Q4_0 / Q4_1 block, a Q4_K sub-block of 32, a quarter of a Q6_K block:
// 64 elements in four sub-blocks of 16), turns its weight bytes into int8 lanes with masks and shifts (a Q4_K
// sub-block of high nibbles: masked in place as unsigned bytes, 16 q, its scale divided by 16) and multiplies them
// with q by dp2a (two int16 x 8-bit products per instruction, exact int32 sums). Offsets and mins go through the
// sums of q (Q4_0: -8 sum q, Q6_K: -32 sum q, Q4_1 / Q4_K: min * sum q), and each unit ends in f32:
// acc += (w_scale * d) * float(int sum). out[m, n] depends only on row m of x and row n of w: the same quantized x,
// units, lanes and order whatever M is.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/gemv_blocks.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

template <DType DT>
constexpr bool int_dot_dtype() {
    return DT == DType::Q8_0 || DT == DType::Q4_0 || DT == DType::Q4_1 || DT == DType::Q4_K || DT == DType::Q6_K;
}

constexpr int kXqMax = 32767;

// x [M, K] quantized (K a multiple of 32): q [M, K] int16 (each row's chunks placed by xq_chunk_pos), d [M, K / 32]
// f32, s [M, K / 16] int32 (sum of q over each 16-element half).
struct XQuant {
    const int16_t* q;
    const float* d;
    const int32_t* s;
    int64_t K;
    __host__ __device__ XQuant rows_from(int64_t m0) const {
        return {q + m0 * K, d + m0 * (K / 32), s + m0 * (K / 16), K};
    }
};

// Where element e's 8-element chunk starts in a row of q (int16 elements; e a multiple of 8). Each 1,024-element group
// of a row is stored chunk-major: chunk c (elements 8c .. 8c + 7) of the group's 32-element block b at (c * n + b) * 8,
// n the group's blocks (32, fewer in a row's last group). A warp whose lanes take consecutive blocks (a unit each)
// then reads each chunk as one contiguous 512-byte access instead of 16-byte pieces at a 64-byte lane stride.
__host__ __device__ __forceinline__ int64_t xq_chunk_pos(int64_t e, int64_t K) {
    const int64_t g = e >> 10, left = (K >> 5) - 32 * g;
    const int b = int(e >> 5) & 31, c = int(e >> 3) & 3, n = left < 32 ? int(left) : 32;
    return (g << 10) + int64_t(c * n + b) * 8;
}

// Bytes of the quantized x of M rows: q, d and s areas, each rounded up to 256 bytes.
inline size_t xquant_bytes(int64_t M, int64_t K, size_t (&off)[3]) {
    auto up = [](size_t n) { return (n + 255) & ~size_t(255); };
    off[0] = 0;
    off[1] = up(size_t(M * K) * 2);
    off[2] = off[1] + up(size_t(M * (K / 32)) * 4);
    return off[2] + up(size_t(M * (K / 16)) * 4);
}

// One thread per 8 consecutive elements of x (flattened [M, K]), four threads per 32-element block. Launched as a
// programmatic dependent (it waits for the kernel that wrote x before reading it, and before writing the shared
// quantized-x area another GEMV may still read), and lets the dependent GEMV launch at once (it waits for this
// grid before it reads q).
__global__ void __launch_bounds__(256) quantize_x_kernel(const float* __restrict__ x, int16_t* __restrict__ q,
                                                         float* __restrict__ d, int32_t* __restrict__ s, int64_t n8,
                                                         int64_t K) {
    pdl_release();
    pdl_wait();
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const bool valid = i < n8;  // n8 is a multiple of 4: a block's four threads are all valid or all not
    float v[8] = {};
    if (valid) {
        const float4 a = __ldg(reinterpret_cast<const float4*>(x) + 2 * i);
        const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 2 * i + 1);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) amax = fmaxf(amax, fabsf(v[k]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float id = amax > 0.0f ? float(kXqMax) / amax : 0.0f;
    int qi[8], sum = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        qi[k] = min(max(__float2int_rn(v[k] * id), -kXqMax), kXqMax);
        sum += qi[k];
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    if (!valid) return;
    uint4 packed;
    packed.x = (uint32_t(qi[0]) & 0xffffu) | (uint32_t(qi[1]) << 16);
    packed.y = (uint32_t(qi[2]) & 0xffffu) | (uint32_t(qi[3]) << 16);
    packed.z = (uint32_t(qi[4]) & 0xffffu) | (uint32_t(qi[5]) << 16);
    packed.w = (uint32_t(qi[6]) & 0xffffu) | (uint32_t(qi[7]) << 16);
    const int64_t m = 8 * i / K, e = 8 * i - m * K;
    *reinterpret_cast<uint4*>(q + m * K + xq_chunk_pos(e, K)) = packed;
    if ((i & 3) == 0) d[i >> 2] = amax / float(kXqMax);
    if ((i & 1) == 0) s[i >> 1] = sum;
}

// N words from the even byte offset `off` of a tile (reads one word past them).
template <int N>
__device__ __forceinline__ void lds_words(const uint32_t* t, int off, uint32_t (&w)[N]) {
    const uint32_t* p = t + (off >> 2);
    const uint32_t sh = uint32_t(off & 3) * 8;
    uint32_t prev = p[0];
#pragma unroll
    for (int i = 0; i < N; i++) {
        const uint32_t next = p[i + 1];
        w[i] = __funnelshift_r(prev, next, sh);
        prev = next;
    }
}

constexpr uint32_t kLow4 = 0x0F0F0F0Fu;

// dp2a with signed 16-bit halves of a and unsigned bytes of b (the lanes of a Q4_K unit's high nibbles in place).
__device__ __forceinline__ int dp2a_lo_su(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp2a.lo.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
__device__ __forceinline__ int dp2a_hi_su(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp2a.hi.s32.u32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// Sum over 4k + j < 4 * NW of q[4k + j] * byte j of w[k] (int16 pairs of x against int8 lanes of w, or unsigned
// bytes when kUnsigned).
template <int NW, bool kUnsigned = false>
__device__ __forceinline__ int dot_words(const uint32_t* xw, const uint32_t* w) {
    int acc = 0;
#pragma unroll
    for (int k = 0; k < NW; k++) {
        if constexpr (kUnsigned) {
            acc = dp2a_lo_su(xw[2 * k], w[k], acc);
            acc = dp2a_hi_su(xw[2 * k + 1], w[k], acc);
        } else {
            acc = __dp2a_lo(int(xw[2 * k]), int(w[k]), acc);
            acc = __dp2a_hi(int(xw[2 * k + 1]), int(w[k]), acc);
        }
    }
    return acc;
}

// Elements per unit (one lane's share of a tile per step).
template <DType DT>
constexpr int int_unit_elems() {
    return DT == DType::Q6_K ? 64 : 32;
}

// A unit's weights: int8 lanes n (element 4k + j of the unit in byte j of n[k]) and its f32 factors.
template <DType DT>
struct IntUnit {
    static constexpr int kWords = int_unit_elems<DT>() / 4;
    uint32_t n[kWords];
    float scale[DT == DType::Q6_K ? 4 : 1];  // per sub-block of 16 (Q6_K) or the unit
    float bias;                              // Q4_1: m; Q4_K: -dmin * m
};

// Unit u of a tile of DT blocks in shared memory (words t).
template <DType DT>
__device__ __forceinline__ void load_unit(const uint32_t* t, int u, IntUnit<DT>& w) {
    if constexpr (DT == DType::Q8_0) {
        const int off = 34 * u;
        w.scale[0] = h2f(uint16_t(lds16(t, off)));
        lds_words<8>(t, off + 2, w.n);
    } else if constexpr (DT == DType::Q4_0 || DT == DType::Q4_1) {
        constexpr int kB = DT == DType::Q4_0 ? 18 : 20;
        const int off = kB * u;
        w.scale[0] = h2f(uint16_t(lds16(t, off)));
        if constexpr (DT == DType::Q4_1) w.bias = h2f(uint16_t(lds16(t, off + 2)));
        uint32_t qs[4];
        lds_words<4>(t, off + kB - 16, qs);
#pragma unroll
        for (int k = 0; k < 4; k++) w.n[k] = qs[k] & kLow4, w.n[4 + k] = (qs[k] >> 4) & kLow4;  // elements k, 16 + k
    } else if constexpr (DT == DType::Q4_K) {
        const int off = 144 * (u >> 3), sb = u & 7, j = sb >> 1;
        const uint4 h = reinterpret_cast<const uint4*>(t)[off >> 4];  // d, dmin, scales[12]
        const uint4 a = reinterpret_cast<const uint4*>(t)[(off + 16 + 32 * j) >> 4];
        const uint4 b = reinterpret_cast<const uint4*>(t)[(off + 32 + 32 * j) >> 4];
        const uint32_t qs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        // Sub-block 2j: the low nibbles of qs[32j, 32j + 32); 2j + 1: the high nibbles, left in place (16 q, as
        // unsigned bytes) with the scale divided by 16: the same products and sums, one instruction fewer per word.
        const bool hi = sb & 1;
        const uint32_t mask = hi ? ~kLow4 : kLow4;
#pragma unroll
        for (int k = 0; k < 8; k++) w.n[k] = qs[k] & mask;
        // 6-bit scale and min of sub-block sb, four sub-blocks per word.
        uint32_t scw, mw;
        q4k_scale_min_words(h, j, scw, mw);
        const int bsh = 8 * (sb & 3);
        w.scale[0] = h2f(uint16_t(h.x & 0xffffu)) * float((scw >> bsh) & 0xffu) * (hi ? 0.0625f : 1.0f);
        w.bias = -(h2f(uint16_t(h.x >> 16)) * float((mw >> bsh) & 0xffu));
    } else {  // Q6_K: elements 128 hf + 32 k + 16 is + [0, 16) for k < 4 (hf = (u >> 1) & 1, is = u & 1)
        const int off = 210 * (u >> 2), hf = (u >> 1) & 1, is = u & 1;
        uint32_t a[4], b[4], hq[4];
        lds_words<4>(t, off + 64 * hf + 16 * is, a);       // ql: low nibbles k = 0, high k = 2
        lds_words<4>(t, off + 64 * hf + 32 + 16 * is, b);  // ql: low nibbles k = 1, high k = 3
        lds_words<4>(t, off + 128 + 32 * hf + 16 * is, hq);
        constexpr uint32_t kHi2 = 0x30303030u;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w.n[i] = (a[i] & kLow4) | ((hq[i] << 4) & kHi2);
            w.n[4 + i] = (b[i] & kLow4) | ((hq[i] << 2) & kHi2);
            w.n[8 + i] = ((a[i] >> 4) & kLow4) | (hq[i] & kHi2);
            w.n[12 + i] = ((b[i] >> 4) & kLow4) | ((hq[i] >> 2) & kHi2);
        }
        const float dd = h2f(uint16_t(lds16(t, off + 208)));
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int sci = off + 192 + 8 * hf + is + 2 * k;
            w.scale[k] = dd * float(int(int8_t(uint8_t(t[sci >> 2] >> ((sci & 3) * 8)))));
        }
    }
}

// First element of unit u within its tile.
template <DType DT>
__device__ __forceinline__ int unit_elem0(int u) {
    if constexpr (DT == DType::Q6_K) return 256 * (u >> 2) + 128 * ((u >> 1) & 1) + 16 * (u & 1);
    else return 32 * u;
}

// The quantized x of one unit: int16 pairs, block scales and 16-element sums.
template <DType DT>
struct IntUnitX {
    static constexpr bool kQ6 = DT == DType::Q6_K;
    uint32_t w[int_unit_elems<DT>() / 2];
    float d[kQ6 ? 4 : 1];
    int s[kQ6 ? 4 : 1];
};

// xq: row r of the quantized x, from the tile's first element e0; e: the unit's first element in the tile.
template <DType DT>
__device__ __forceinline__ void load_unit_x(const XQuant& xq, int r, int64_t e0, int e, IntUnitX<DT>& x) {
    const int64_t er = e0 + e, el = int64_t(r) * xq.K + er;  // the unit's first element in its row / in x
    const int16_t* qr = xq.q + int64_t(r) * xq.K;
    auto chunk = [&](int64_t at) { return __ldg(reinterpret_cast<const uint4*>(qr + xq_chunk_pos(at, xq.K))); };
    if constexpr (DT == DType::Q6_K) {  // groups of 16 at e + 32 k: blocks el / 32 + k, halves el / 16 + 2 k
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint4 a = chunk(er + 32 * k), b = chunk(er + 32 * k + 8);
            x.w[8 * k] = a.x, x.w[8 * k + 1] = a.y, x.w[8 * k + 2] = a.z, x.w[8 * k + 3] = a.w;
            x.w[8 * k + 4] = b.x, x.w[8 * k + 5] = b.y, x.w[8 * k + 6] = b.z, x.w[8 * k + 7] = b.w;
            x.d[k] = __ldg(xq.d + el / 32 + k);
            x.s[k] = __ldg(xq.s + el / 16 + 2 * k);
        }
    } else {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint4 a = chunk(er + 8 * k);
            x.w[4 * k] = a.x, x.w[4 * k + 1] = a.y, x.w[4 * k + 2] = a.z, x.w[4 * k + 3] = a.w;
        }
        x.d[0] = __ldg(xq.d + el / 32);
        if constexpr (DT != DType::Q8_0) x.s[0] = __ldg(xq.s + el / 16) + __ldg(xq.s + el / 16 + 1);
    }
}

// acc += the unit's weights . x.
template <DType DT>
__device__ __forceinline__ void unit_dot(const IntUnit<DT>& w, const IntUnitX<DT>& x, float& acc) {
    if constexpr (DT == DType::Q6_K) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int p = dot_words<4>(x.w + 8 * k, w.n + 4 * k) - 32 * x.s[k];
            acc = fmaf(w.scale[k] * x.d[k], float(p), acc);
        }
    } else {
        int p = dot_words<8, DT == DType::Q4_K>(x.w, w.n);  // Q4_K: up to 32767 * 240 * 32 < 2^31
        if constexpr (DT == DType::Q4_0) p -= 8 * x.s[0];
        acc = fmaf(w.scale[0] * x.d[0], float(p), acc);
        if constexpr (DT == DType::Q4_1 || DT == DType::Q4_K) acc = fmaf(w.bias * x.d[0], float(x.s[0]), acc);
    }
}

// acc[rw][r] += rows[rw] . x[r] over K for r < n_rows, x quantized (xq from the row group's first row).
template <DType DT, int MR, int RW>
__device__ __forceinline__ void rows_dot_int(const uint8_t* const (&rows)[RW], const XQuant& xq, int64_t K,
                                             int n_rows, int lane, uint4* sm, float (&acc)[RW][MR]) {
    constexpr int kUnit = int_unit_elems<DT>();
    static_assert(TileGeom<DT>::kElems % kUnit == 0);
    tile_pipeline<DT, RW, true>(rows, K, lane, sm, [&](const uint32_t* tw, int rw_words, int64_t e0, int te) {
        const int n_units = te / kUnit;
        for (int u = lane; u < n_units; u += 32) {
            IntUnit<DT> w[RW];
#pragma unroll
            for (int rw = 0; rw < RW; rw++) load_unit<DT>(tw + rw * rw_words, u, w[rw]);
            const int e = unit_elem0<DT>(u);
#pragma unroll
            for (int r = 0; r < MR; r++) {
                if (r < n_rows) {
                    IntUnitX<DT> x;
                    load_unit_x<DT>(xq, r, e0, e, x);
#pragma unroll
                    for (int rw = 0; rw < RW; rw++) unit_dot<DT>(w[rw], x, acc[rw][r]);
                }
            }
        }
    });
}

}  // namespace osprey::backend::cuda
