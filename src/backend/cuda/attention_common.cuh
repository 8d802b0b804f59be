// Internals shared by the paged-attention kernel files (attention.cu, attention_decode*.cu, attention_prefill*.cu):
// visibility and split rules, 16-byte KV row staging, the prefill grid, and the launchers' declarations.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "backend/cuda/attention.cuh"

namespace osprey::backend::cuda::attn {

constexpr float kLog2e = 1.4426950408889634f;

// ---------------------------------------------------------------- decode split rule

constexpr int kDecodeMaxSplits = 32;  // bound of every rule below (the merge kernel's register arrays)

// How a query that sees n keys is cut into splits (one block each, merged in split order): about target keys per
// split, at most max_splits splits of equal size rounded up to a multiple of gran. A function of n alone, so a
// token's split points (and its result) never depend on the batch around it.
struct DecodeSplitRule {
    int target = 256, max_splits = 32, gran = 64;

    __host__ __device__ constexpr int split_size(int n) const {
        int ns = (n + target - 1) / target;
        ns = ns < 1 ? 1 : (ns > max_splits ? max_splits : ns);
        const int per = (n + ns - 1) / ns;
        const int rounded = (per + gran - 1) / gran * gran;
        return rounded < gran ? gran : rounded;
    }
    __host__ __device__ constexpr int n_splits(int n) const {
        const int s = split_size(n);
        return (n + s - 1) / s;
    }
    // n_splits(n) is not monotonic in n, but never exceeds min(max_splits, ceil(n / target)), which is: the
    // bound for every n <= max_n.
    __host__ __device__ constexpr int n_splits_bound(int max_n) const {
        const int ns = (max_n + target - 1) / target;
        return ns < 1 ? 1 : (ns > max_splits ? max_splits : ns);
    }
};

// The tensor-core kernel's rule: 256-key splits (a 576-key context takes 3 of 192; 4096 keys 16 of 256, 32768 keys
// 32 of 1024). The SIMT kernel's original rule (128-key splits, at most 16) stays selectable with
// OSPREY_CUDA_ATTN_DECODE=simt, for comparisons.
constexpr DecodeSplitRule kDecodeRuleMma{256, 32, 64};
constexpr DecodeSplitRule kDecodeRuleSimt{128, 16, 128};

// Padded head size the kernels are instantiated for.
inline int padded_head_dim(int hd) { return hd <= 64 ? 64 : (hd <= 128 ? 128 : 256); }

// ---------------------------------------------------------------- device helpers

// The first key visible to the query at pos: keys [first, pos] are visible.
__device__ __forceinline__ int first_visible(int pos, int window) { return window > 0 ? max(0, pos - window + 1) : 0; }

// Score in the log2 domain: s is q.k with q already multiplied by scale (and by log2(e) when there is no cap).
__device__ __forceinline__ float cap_score(float s, float softcap) {
    return softcap > 0.0f ? softcap * tanhf(s / softcap) * kLog2e : s;
}

template <typename KV>
__device__ __forceinline__ KV kv_zero();
template <>
__device__ __forceinline__ float kv_zero<float>() { return 0.0f; }
template <>
__device__ __forceinline__ __half kv_zero<__half>() { return __float2half(0.0f); }

__device__ __forceinline__ float kv_to_float(float x) { return x; }
__device__ __forceinline__ float kv_to_float(__half x) { return __half2float(x); }

// The 16 // sizeof(KV) elements of one 16-byte vector as floats.
__device__ __forceinline__ void vec_to_float(const uint4& u, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 x = __half22float2(h[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}
__device__ __forceinline__ void vec_to_float(const uint4& u, float (&f)[4]) {
    f[0] = __uint_as_float(u.x), f[1] = __uint_as_float(u.y), f[2] = __uint_as_float(u.z), f[3] = __uint_as_float(u.w);
}

// CW consecutive elements (CW = 2 or 4, aligned to CW elements) as floats.
template <int CW>
__device__ __forceinline__ void load_cols(const __half* p, float (&f)[CW]) {
    if constexpr (CW == 4) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
        const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
        f[0] = a.x, f[1] = a.y, f[2] = b.x, f[3] = b.y;
    } else {
        const float2 a = __half22float2(*reinterpret_cast<const __half2*>(p));
        f[0] = a.x, f[1] = a.y;
    }
}
template <int CW>
__device__ __forceinline__ void load_cols(const float* p, float (&f)[CW]) {
    if constexpr (CW == 4) {
        const float4 a = *reinterpret_cast<const float4*>(p);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
    } else {
        const float2 a = *reinterpret_cast<const float2*>(p);
        f[0] = a.x, f[1] = a.y;
    }
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Online-softmax step of one row: the running max m moves to max(m, tile_max); returns the factor that rescales
// the running sum and weighted V, and sets m_use, the max the new weights exp2f(s - m_use) are taken against.
// A row that has seen no visible key yet keeps m = -inf, a zero sum and zero accumulators (factor 0, weights 0).
__device__ __forceinline__ float softmax_step(float& m, float tile_max, float& m_use) {
    const float m_new = fmaxf(m, tile_max);
    m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float corr = exp2f(m - m_use);
    m = m_new;
    return corr;
}

// ---------------------------------------------------------------- launchers

struct DecodePartials {
    float* o = nullptr;   // [n_seqs, n_heads, n_split_max, head_dim]: unnormalized weighted V of each split
    float* ml = nullptr;  // [n_seqs, n_heads, n_split_max, 2]: (max in the log2 domain, sum of weights)
    int n_split_max = 1;
    DecodeSplitRule rule = kDecodeRuleMma;
    // Tensor-core kernel: consecutive splits one block holds (0: chosen by its launcher from the batch's size).
    int splits_per_block = 0;
    // Sequences of at most this many splits were merged and written by the split kernel (the tensor-core
    // kernel's block held all their splits); the merge kernel skips them. 0 for the SIMT kernel.
    int block_merged_splits = 0;
};

// The merge of one (token, head)'s n split partials in split order, shared by the merge kernel and the
// tensor-core split kernel so both give bit-identical results: the weight w[i] of split i, whose (max, sum) is at
// ml + i * ml_stride, and the returned 1 / (the weighted sum of sums).
__device__ __forceinline__ float decode_split_weights(int n, const float* ml, int ml_stride,
                                                      float (&w)[kDecodeMaxSplits]) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, ml[i * ml_stride]);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kDecodeMaxSplits; i++) {
        w[i] = i < n ? exp2f(ml[i * ml_stride] - mx) : 0.0f;
        if (i < n) sum = fmaf(ml[i * ml_stride + 1], w[i], sum);
    }
    return 1.0f / sum;
}
// One output element: split i's weighted-V element at o[i * o_stride], merged with the weights above.
__device__ __forceinline__ float decode_merge_column(int n, const float (&w)[kDecodeMaxSplits], float inv,
                                                     const float* o, int64_t o_stride) {
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < kDecodeMaxSplits; i++)
        if (i < n) acc = fmaf(o[i * o_stride], w[i], acc);
    return acc * inv;
}

// The end of a decode split block: each of its kWarpsN warps left, per query row r < n_rows, its online-softmax
// state in shared memory — wml[(w * rows_per_warp + r) * 2 + {0, 1}] = (max, sum), wo[(w * rows_per_warp + r) *
// o_stride + e] = weighted V — and the block's threads (tid of n_threads) merge them in warp order into the split's
// partial for query heads h0 + r of sequence s. The caller synchronizes the block first.
template <int kWarpsN>
__device__ __forceinline__ void merge_warp_states(const float* wml, const float* wo, int rows_per_warp, int o_stride,
                                                  int n_rows, int hd, int tid, int n_threads,
                                                  const PagedAttentionArgs& a, const DecodePartials& part, int s,
                                                  int h0, int split) {
    for (int idx = tid; idx < n_rows * hd; idx += n_threads) {
        const int r = idx / hd, e = idx % hd;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarpsN; w++) mx = fmaxf(mx, wml[(w * rows_per_warp + r) * 2]);
        float o = 0.0f, sum = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarpsN; w++) {
            const float mw = wml[(w * rows_per_warp + r) * 2];
            const float f = mw == -INFINITY ? 0.0f : exp2f(mw - mx);  // a warp that saw no key weighs nothing
            o = fmaf(wo[(w * rows_per_warp + r) * o_stride + e], f, o);
            sum = fmaf(wml[(w * rows_per_warp + r) * 2 + 1], f, sum);
        }
        const int64_t base = (int64_t(s) * a.n_heads + h0 + r) * part.n_split_max + split;
        part.o[base * hd + e] = o;
        if (e == 0) part.ml[base * 2] = mx, part.ml[base * 2 + 1] = sum;
    }
}

// Sequences with exactly one query token: the split kernel, then the merge kernel (attention.cu).
void launch_decode_splits(const PagedAttentionArgs& a, const DecodePartials& part, bool kv_vec_ok,
                          cudaStream_t stream);
void launch_decode_merge(const PagedAttentionArgs& a, const DecodePartials& part, cudaStream_t stream);
// The same on tensor cores (attention_decode_mma.cu): f16 pools with 16-byte aligned rows; returns false, launching
// nothing, for other batches. Sets part.splits_per_block and part.block_merged_splits: the merge kernel is needed
// only when block_merged_splits < n_split_max.
bool launch_decode_mma(const PagedAttentionArgs& a, DecodePartials& part, bool kv_vec_ok, cudaStream_t stream);
// Sequences with two or more query tokens: the tensor-core kernel where it applies, else the f32 SIMT one
// (attention_prefill.cu; OSPREY_CUDA_ATTN_PREFILL=simt forces it, for comparisons).
void launch_prefill_tiles(const PagedAttentionArgs& a, bool kv_vec_ok, cudaStream_t stream);
// The tensor-core kernel (attention_prefill_mma.cu): f16 pools with head_dim a multiple of 8 and 16-byte aligned
// rows; returns false, launching nothing, for other batches.
bool launch_prefill_mma(const PagedAttentionArgs& a, bool kv_vec_ok, cudaStream_t stream);

// ---------------------------------------------------------------- prefill grid

// The prefill kernels' grid: tiles of kRowsPerTile rows (row i * group + g = query token i, query head g of the KV
// head). Sequence s owns the tile slots [prefill_tile_base(s), prefill_tile_base(s + 1)), enough for its
// ceil(n_q * group / kRowsPerTile) tiles; the slots left over exit at once.
template <int kRowsPerTile>
__host__ __device__ __forceinline__ int64_t prefill_tile_base(const int32_t* query_start, int s, int group) {
    return (int64_t(query_start[s]) * group + kRowsPerTile - 1) / kRowsPerTile + s;
}
template <int kRowsPerTile>
inline int64_t prefill_tile_slots(const PagedAttentionArgs& a) {
    return (int64_t(a.n_tokens) * (a.n_heads / a.n_kv_heads) + kRowsPerTile - 1) / kRowsPerTile + a.n_seqs;
}

struct PrefillTile {
    int s, t0;       // the sequence and its first token row
    int r0, n_rows;  // the tile's first row and row count
};

// The tile of slot b (the last sequence whose first slot is <= b, found by binary search; its longest rows, i.e.
// latest tokens, first). False for a slot without a tile: past the sequence's tiles, or a one-token sequence
// (the decode kernel serves those).
template <int kRowsPerTile>
__device__ __forceinline__ bool prefill_tile_of(const PagedAttentionArgs& a, int64_t b, int group, PrefillTile& t) {
    int lo = 0, hi = a.n_seqs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (prefill_tile_base<kRowsPerTile>(a.query_start, mid, group) <= b) lo = mid;
        else hi = mid - 1;
    }
    t.s = lo;
    t.t0 = a.query_start[lo];
    const int n_q = a.query_start[lo + 1] - t.t0;
    if (n_q < 2) return false;
    const int n_rows_all = n_q * group, n_tiles = (n_rows_all + kRowsPerTile - 1) / kRowsPerTile;
    const int64_t local = b - prefill_tile_base<kRowsPerTile>(a.query_start, lo, group);
    if (local >= n_tiles) return false;
    t.r0 = (n_tiles - 1 - int(local)) * kRowsPerTile;
    t.n_rows = min(kRowsPerTile, n_rows_all - t.r0);
    return true;
}

// Thread tid < kRowsPerTile fills row tid of the tile: its query's position and first visible key (rows past the
// tile's rows see no key). The caller synchronizes the block before reading them.
template <int kRowsPerTile>
__device__ __forceinline__ void load_row_windows(int* row_pos, int* row_first, int tid, const PagedAttentionArgs& a,
                                                 const PrefillTile& t, int group) {
    if (tid >= kRowsPerTile) return;
    if (tid < t.n_rows) {
        const int pos = a.positions[t.t0 + (t.r0 + tid) / group];
        row_pos[tid] = pos;
        row_first[tid] = first_visible(pos, a.window);
    } else {
        row_pos[tid] = -1;
        row_first[tid] = INT_MAX;
    }
}

}  // namespace osprey::backend::cuda::attn
