// The block-type path of the small-batch GEMV: a warp takes RW weight rows at once and streams them through
// shared memory in tiles of whole blocks (16-byte cp.async copies, kStages tiles in flight, no change of the GGUF
// layout), then each lane decodes 8-element groups g = lane, lane + 32, ... of every row from shared memory with
// aligned 32-bit loads and multiplies them with up to MR rows of x (f32, read once per group for all RW rows).
// Quantized values become floats exactly through the 2^23 magic (a byte placed under the exponent of 2^23, then
// 2^23 subtracted), so the products and sums are the f32 arithmetic of the per-warp path: out[m, n] is one
// fixed-order reduction whatever M is and whichever slot of the warp row n takes.
// Requires rows of whole 16-byte vectors (row bytes and weight pointers 16-byte aligned) and x 16-byte aligned.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

// Elements and bytes per block of a block dtype.
template <DType DT>
struct BlockGeom;
#define OSP_BLOCK_GEOM(T, E, B)                    \
    template <>                                    \
    struct BlockGeom<DType::T> {                   \
        static constexpr int kElems = E, kBytes = B; \
    };
OSP_BLOCK_GEOM(Q4_0, 32, 18)
OSP_BLOCK_GEOM(Q4_1, 32, 20)
OSP_BLOCK_GEOM(Q5_0, 32, 22)
OSP_BLOCK_GEOM(Q5_1, 32, 24)
OSP_BLOCK_GEOM(Q8_0, 32, 34)
OSP_BLOCK_GEOM(Q2_K, 256, 84)
OSP_BLOCK_GEOM(Q3_K, 256, 110)
OSP_BLOCK_GEOM(Q4_K, 256, 144)
OSP_BLOCK_GEOM(Q5_K, 256, 176)
OSP_BLOCK_GEOM(Q6_K, 256, 210)
#undef OSP_BLOCK_GEOM

constexpr int gcd_int(int a, int b) { return b == 0 ? a : gcd_int(b, a % b); }

// A tile: the fewest whole blocks that fill whole 16-byte vectors, repeated up to at least 1024 elements.
template <DType DT>
struct TileGeom {
    using G = BlockGeom<DT>;
    static constexpr int kUnitBlocks = 16 / gcd_int(G::kBytes, 16);
    static constexpr int kUnitElems = kUnitBlocks * G::kElems;
    static constexpr int kElems = kUnitElems >= 1024 ? kUnitElems : kUnitElems * (1024 / kUnitElems);
    static constexpr int kBytes = kElems / G::kElems * G::kBytes;
    static constexpr int kVecs = kBytes / 16;
    static_assert(kBytes % 16 == 0 && kElems % 8 == 0);
};

constexpr int kGemvStages = 3;  // tiles in flight per warp (one decoded, the others loading)

// How a decoded group turns into weights: w = scale * q (Scale), w = scale * q + bias (ScaleBias), or q already
// holds the weights (Weights: the generic dequant8 decoders). The first two take dot products as
// scale * sum(q x) + bias * sum(x), so the decode costs one conversion per weight and sum(x) is shared by the rows.
enum class DecKind { Scale, ScaleBias, Weights };

template <DType DT>
constexpr DecKind dec_kind() {
    if constexpr (DT == DType::Q8_0 || DT == DType::Q4_0 || DT == DType::Q6_K) return DecKind::Scale;
    else if constexpr (DT == DType::Q4_1 || DT == DType::Q4_K) return DecKind::ScaleBias;
    else return DecKind::Weights;
}

// The 8 bytes at byte offset `off` (any alignment) of a shared-memory tile read as words.
__device__ __forceinline__ uint2 lds8(const uint32_t* t, int off) {
    const uint32_t* w = t + (off >> 2);
    const uint32_t sh = uint32_t(off & 3) * 8;
    return make_uint2(__funnelshift_r(w[0], w[1], sh), __funnelshift_r(w[1], w[2], sh));
}

// The 16-bit value at an even byte offset.
__device__ __forceinline__ uint32_t lds16(const uint32_t* t, int off) {
    return (t[off >> 2] >> ((off & 2) * 8)) & 0xffffu;
}

// q[k] = byte k of w minus (off - 2^23): exact for bytes and offsets below 2^23.
__device__ __forceinline__ void bytes_to_floats(uint32_t w, float off, float* q) {
#pragma unroll
    for (int k = 0; k < 4; k++) q[k] = __int_as_float(int(__byte_perm(w, 0x4B000000u, 0x7650u | k))) - off;
}

constexpr float kMagic = 8388608.0f;  // 2^23

// The 6-bit scales and mins of a Q4_K block's sub-blocks 2j and 2j + 1 (GGUF's get_scale_min_k4), four sub-blocks
// per word, byte (sub-block & 3): h holds the block's first 16 bytes (d, dmin, scales[12]); j is the 64-element chunk.
__device__ __forceinline__ void q4k_scale_min_words(const uint4& h, int j, uint32_t& scw, uint32_t& mw) {
    if (j < 2) {
        scw = h.y & 0x3F3F3F3Fu, mw = h.z & 0x3F3F3F3Fu;
    } else {
        scw = (h.w & 0x0F0F0F0Fu) | ((h.y >> 2) & 0x30303030u);
        mw = ((h.w >> 4) & 0x0F0F0F0Fu) | ((h.z >> 2) & 0x30303030u);
    }
}

// Group g (elements [8g, 8g + 8)) of a tile of DT blocks in shared memory.
template <DType DT>
__device__ __forceinline__ void decode8(const uint32_t* t, int g, float (&q)[8], float& scale, float& bias) {
    if constexpr (DT == DType::Q8_0) {
        const int off = 34 * (g >> 2);
        scale = h2f(uint16_t(lds16(t, off)));
        const uint2 v = lds8(t, off + 2 + 8 * (g & 3));
        bytes_to_floats(v.x ^ 0x80808080u, kMagic + 128.0f, q);
        bytes_to_floats(v.y ^ 0x80808080u, kMagic + 128.0f, q + 4);
    } else if constexpr (DT == DType::Q4_0 || DT == DType::Q4_1) {
        constexpr int kB = DT == DType::Q4_0 ? 18 : 20;
        const int off = kB * (g >> 2), s = g & 3;  // s 0, 1: low nibbles of qs[0..16); 2, 3: high nibbles
        scale = h2f(uint16_t(lds16(t, off)));
        const uint2 v = lds8(t, off + (kB - 16) + 8 * (s & 1));
        const int sh = (s >> 1) * 4;
        constexpr float kOff = DT == DType::Q4_0 ? kMagic + 8.0f : kMagic;
        bytes_to_floats((v.x >> sh) & 0x0F0F0F0Fu, kOff, q);
        bytes_to_floats((v.y >> sh) & 0x0F0F0F0Fu, kOff, q + 4);
        if constexpr (DT == DType::Q4_1) bias = h2f(uint16_t(lds16(t, off + 2)));
    } else if constexpr (DT == DType::Q4_K) {
        const int off = 144 * (g >> 5), gb = g & 31;
        const int j = gb >> 3, hi = (gb >> 2) & 1, l0 = 8 * (gb & 3);  // 64-chunk, nibble half, byte in chunk
        const uint4 h = reinterpret_cast<const uint4*>(t)[off >> 4];    // d, dmin, scales[12]
        const uint2 v = reinterpret_cast<const uint2*>(t)[(off + 16 + 32 * j + l0) >> 3];
        // 6-bit scale and min of sub-block 2j + hi, four sub-blocks per word.
        uint32_t scw, mw;
        q4k_scale_min_words(h, j, scw, mw);
        const uint32_t sel = 0x7650u | uint32_t((2 * j + hi) & 3);
        const float sc = __int_as_float(int(__byte_perm(scw, 0x4B000000u, sel))) - kMagic;
        const float m = __int_as_float(int(__byte_perm(mw, 0x4B000000u, sel))) - kMagic;
        scale = h2f(uint16_t(h.x & 0xffffu)) * sc;
        bias = -(h2f(uint16_t(h.x >> 16)) * m);
        const int sh = 4 * hi;
        bytes_to_floats((v.x >> sh) & 0x0F0F0F0Fu, kMagic, q);
        bytes_to_floats((v.y >> sh) & 0x0F0F0F0Fu, kMagic, q + 4);
    } else if constexpr (DT == DType::Q6_K) {
        const int off = 210 * (g >> 5), gb = g & 31;
        const int n = gb >> 4, quarter = (gb >> 2) & 3, l0 = 8 * (gb & 3);
        const uint2 l = lds8(t, off + 64 * n + (quarter & 1) * 32 + l0);
        const uint2 hq = lds8(t, off + 128 + 32 * n + l0);
        const int sci = off + 192 + 8 * n + l0 / 16 + 2 * quarter;
        const int sc = int(int8_t(uint8_t(t[sci >> 2] >> ((sci & 3) * 8))));
        scale = h2f(uint16_t(lds16(t, off + 208))) * float(sc);
        const int ls = (quarter >> 1) * 4, hs = 2 * quarter;
        const uint32_t w0 = ((l.x >> ls) & 0x0F0F0F0Fu) | (((hq.x >> hs) & 0x03030303u) << 4);
        const uint32_t w1 = ((l.y >> ls) & 0x0F0F0F0Fu) | (((hq.y >> hs) & 0x03030303u) << 4);
        bytes_to_floats(w0, kMagic + 32.0f, q);
        bytes_to_floats(w1, kMagic + 32.0f, q + 4);
    } else {
        dequant8<DT>(reinterpret_cast<const uint8_t*>(t), g, q);
    }
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Shared memory of one warp (bytes): kGemvStages tiles of RW rows (a launch adds 16 bytes that lds8 may read
// past the end).
template <DType DT, int RW>
constexpr int gemv_warp_smem() {
    return kGemvStages * RW * TileGeom<DT>::kBytes;
}

// Streams RW rows through this warp's shared memory in tiles (kGemvStages in flight) and calls
// compute(tile words, rw stride in words, first element, elements) for each tile, in order, with the tile's copies
// complete. kWaitPrior: after the first copies are issued, wait for the grid this one depends on (programmatic
// dependent launch: the weights start loading while the kernel that writes x finishes; a no-op otherwise).
template <DType DT, int RW, bool kWaitPrior, typename F>
__device__ __forceinline__ void tile_pipeline(const uint8_t* const (&rows)[RW], int64_t K, int lane, uint4* sm,
                                              F&& compute) {
    using G = BlockGeom<DT>;
    using T = TileGeom<DT>;
    constexpr int kStageVecs = RW * T::kVecs;
    const int64_t n_tiles = (K + T::kElems - 1) / T::kElems;
    auto issue = [&](int64_t tile) {
        uint4* dst = sm + int(tile % kGemvStages) * kStageVecs;
        const int64_t e0 = tile * T::kElems;
        const int64_t te = K - e0 < T::kElems ? K - e0 : T::kElems;
        const int nv = int(te / G::kElems * G::kBytes / 16);
        const size_t byte0 = size_t(e0 / G::kElems) * G::kBytes;
#pragma unroll
        for (int rw = 0; rw < RW; rw++) {
            const uint4* src = reinterpret_cast<const uint4*>(rows[rw] + byte0);
            for (int i = lane; i < nv; i += 32) cp_async16(dst + rw * T::kVecs + i, src + i);
        }
    };
#pragma unroll
    for (int s = 0; s < kGemvStages - 1; s++) {
        if (s < n_tiles) issue(s);
        cp_async_commit();
    }
    if constexpr (kWaitPrior) pdl_wait();
    for (int64_t tile = 0; tile < n_tiles; tile++) {
        if (tile + kGemvStages - 1 < n_tiles) issue(tile + kGemvStages - 1);
        cp_async_commit();
        cp_async_wait<kGemvStages - 1>();
        __syncwarp();
        const uint32_t* tw = reinterpret_cast<const uint32_t*>(sm + int(tile % kGemvStages) * kStageVecs);
        const int64_t e0 = tile * T::kElems;
        compute(tw, T::kVecs * 4, e0, int(K - e0 < T::kElems ? K - e0 : T::kElems));
        __syncwarp();
    }
}

// acc[rw][r] += rows[rw] . x[r] over K for r < n_rows. `sm`: this warp's gemv_warp_smem bytes.
template <DType DT, int MR, int RW>
__device__ __forceinline__ void rows_dot_tiled(const uint8_t* const (&rows)[RW], const float* __restrict__ x,
                                               int64_t K, int n_rows, int lane, uint4* sm, float (&acc)[RW][MR]) {
    using T = TileGeom<DT>;
    tile_pipeline<DT, RW, false>(rows, K, lane, sm, [&](const uint32_t* tw, int rw_words, int64_t e0, int te) {
        const int n_groups = te / 8;
        const float* xt = x + e0;
        // NG groups g, g + 32, ...: all decoded and all x loaded before the products (loads in flight together).
        auto groups = [&]<int NG>(int g0) {
            float q[NG][RW][8], sc[NG][RW], bi[NG][RW];
#pragma unroll
            for (int k = 0; k < NG; k++)
#pragma unroll
                for (int rw = 0; rw < RW; rw++) {
                    sc[k][rw] = 1.0f, bi[k][rw] = 0.0f;
                    decode8<DT>(tw + rw * rw_words, g0 + 32 * k, q[k][rw], sc[k][rw], bi[k][rw]);
                }
#pragma unroll
            for (int r = 0; r < MR; r++) {
                if (r < n_rows) {
                    float xv[NG][8];
#pragma unroll
                    for (int k = 0; k < NG; k++) {
                        const float4* xp = reinterpret_cast<const float4*>(xt + r * K + 8 * (g0 + 32 * k));
                        const float4 a = __ldg(xp), b = __ldg(xp + 1);
                        xv[k][0] = a.x, xv[k][1] = a.y, xv[k][2] = a.z, xv[k][3] = a.w;
                        xv[k][4] = b.x, xv[k][5] = b.y, xv[k][6] = b.z, xv[k][7] = b.w;
                    }
#pragma unroll
                    for (int k = 0; k < NG; k++) {
                        [[maybe_unused]] float xs = 0.0f;  // sum of x over the group (the bias term), shared by the RW rows
                        if constexpr (dec_kind<DT>() == DecKind::ScaleBias) {
                            xs = xv[k][0];
#pragma unroll
                            for (int i = 1; i < 8; i++) xs = __fadd_rn(xs, xv[k][i]);
                        }
#pragma unroll
                        for (int rw = 0; rw < RW; rw++) {
                            if constexpr (dec_kind<DT>() == DecKind::Weights) {
#pragma unroll
                                for (int i = 0; i < 8; i++) acc[rw][r] = fmaf(q[k][rw][i], xv[k][i], acc[rw][r]);
                            } else {  // scale * sum(q x) (+ bias * sum(x))
                                float p = __fmul_rn(q[k][rw][0], xv[k][0]);
#pragma unroll
                                for (int i = 1; i < 8; i++) p = fmaf(q[k][rw][i], xv[k][i], p);
                                acc[rw][r] = fmaf(sc[k][rw], p, acc[rw][r]);
                                if constexpr (dec_kind<DT>() == DecKind::ScaleBias)
                                    acc[rw][r] = fmaf(bi[k][rw], xs, acc[rw][r]);
                            }
                        }
                    }
                }
            }
        };
        constexpr int kFullGroups = T::kElems / 8;
        static_assert(kFullGroups % 64 == 0);
        if (n_groups == kFullGroups) {  // whole tiles: two groups at a time
            for (int g = lane; g < kFullGroups; g += 64) groups.template operator()<2>(g);
        } else {
            for (int g = lane; g < n_groups; g += 32) groups.template operator()<1>(g);
        }
    });
}

}  // namespace osprey::backend::cuda
