// Penalties and log-probabilities on the device (see backend/sampling.h for the rules).
// - apply_penalties: one block per row, one thread per (distinct) history entry; the float operations are the
//   host's, each rounded once (apply_penalties_entry), so the row matches the host sampler's bit for bit.
// - row_logprobs: one block of 512 threads per row. One pass keeps the row maximum and each warp's best n
//   (value, id) keys, one per lane (a candidate is ranked only when it beats the warp's n-th best, so after the
//   first batches almost none are); a second pass sums exp(double(l - m)) in double, per thread in id-stride order
//   and then a fixed butterfly tree, so the result is deterministic and differs from the host's sequential double
//   sum only by the summation order (the float lse agrees to ~1 ulp). Warp 0 merges the warps' lists.
// - token_logprobs: one thread per row.
#include <cfloat>
#include <cmath>

#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/logit_ops.cuh"
#include "backend/sampling.h"

namespace osprey::backend::cuda {

namespace {

constexpr int kPenaltyThreads = 256;
constexpr int kLogprobThreads = 512;

// Fixed-order block reduction (every thread gets the result); scratch holds 32 values.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* scratch, T identity, Op op) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

struct MaxF {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct AddD {
    __device__ double operator()(double a, double b) const { return a + b; }
};

__global__ void __launch_bounds__(kPenaltyThreads) apply_penalties_kernel(float* logits, const int32_t* entries,
                                                                         const int32_t* row_start, const float* params,
                                                                         int64_t V) {
    const int64_t r = blockIdx.x;
    const float* p = params + 4 * r;
    if (p[0] == 1.0f && p[1] == 0.0f && p[2] == 0.0f) return;
    float* row = logits + r * V;
    const int64_t end = row_start[r + 1];
    for (int64_t i = int64_t(row_start[r]) + threadIdx.x; i < end; i += blockDim.x)
        apply_penalties_entry(row, V, entries[2 * i], entries[2 * i + 1], p);
}

// A warp's best keys so far, one per lane, descending (lane 0 the best; empty slots 0). The top n are lanes
// [0, n); lanes past n only hold what was pushed down.
struct WarpTop {
    unsigned long long key = 0;

    // Inserts c (the same value in every lane) if it beats the n-th best. Keys are unique.
    __device__ void insert(unsigned long long c, int n) {
        const int lane = threadIdx.x & 31;
        if (c <= __shfl_sync(0xffffffffu, key, n - 1)) return;
        const int pos = __popc(__ballot_sync(0xffffffffu, key > c));
        const unsigned long long up = __shfl_up_sync(0xffffffffu, key, 1);
        if (lane == pos) key = c;
        else if (lane > pos) key = up;
    }
    // Offers each lane's k: the lanes whose k beats the n-th best are inserted one at a time.
    __device__ void offer(unsigned long long k, int n) {
        unsigned mask = __ballot_sync(0xffffffffu, k > __shfl_sync(0xffffffffu, key, n - 1));
        while (mask) {
            const int src = __ffs(mask) - 1;
            mask &= mask - 1;
            insert(__shfl_sync(0xffffffffu, k, src), n);
        }
    }
};

__global__ void __launch_bounds__(kLogprobThreads) row_logprobs_kernel(int32_t* top_ids, float* top_logprobs,
                                                                      float* lse, const float* logits, int64_t V,
                                                                      int n) {
    constexpr int kWarps = kLogprobThreads / 32, kUnroll = 4;
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    __shared__ unsigned long long warp_best[kWarps][20];
    const int64_t r = blockIdx.x;
    const float* l = logits + r * V;
    const int t = int(threadIdx.x), lane = t & 31, warp = t >> 5;

    // Pass 1: the maximum, and each warp's best n over its batches of 32 consecutive ids (warp w takes batches
    // w, w + kWarps, ...; kUnroll batches loaded before any is ranked).
    float m = -INFINITY;
    WarpTop top;
    const int64_t n_batches = n > 0 ? (V + 31) / 32 : 0;
    if (n <= 0)  // the maximum alone, in a plain strided loop
        for (int64_t i = t; i < V; i += kLogprobThreads) m = fmaxf(m, l[i]);
    for (int64_t b0 = warp; b0 < n_batches; b0 += int64_t(kWarps) * kUnroll) {
        float v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t i = (b0 + int64_t(u) * kWarps) * 32 + lane;
            v[u] = i < V ? l[i] : -INFINITY;
        }
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t i = (b0 + int64_t(u) * kWarps) * 32 + lane;
            m = fmaxf(m, v[u]);
            top.offer(i < V ? logit_rank_key(v[u], int32_t(i)) : 0ull, n);
        }
    }
    m = block_reduce(m, fscratch, -INFINITY, MaxF{});

    // Pass 2: the sum of exp(double(l - m)) in double; the row's maximum is returned as is when not finite (host).
    float out = m;
    if (isfinite(m)) {
        double s = 0.0;
        for (int64_t i = t; i < V; i += kLogprobThreads) s += exp(double(__fsub_rn(l[i], m)));
        s = block_reduce(s, dscratch, 0.0, AddD{});
        out = __fadd_rn(m, float(log(s)));
    }
    if (t == 0) lse[r] = out;
    if (n <= 0) return;

    // The warps' lists merged by warp 0, which then writes the row's top n.
    if (lane < n) warp_best[warp][lane] = top.key;
    __syncthreads();
    if (warp != 0) return;
    for (int w = 1; w < kWarps; w++) top.offer(lane < n ? warp_best[w][lane] : 0ull, n);
    if (lane < n) {
        if (top.key == 0) {  // fewer than n values in the row
            top_ids[r * n + lane] = -1;
            top_logprobs[r * n + lane] = -INFINITY;
        } else {
            const int32_t id = int32_t(0xffffffffu - uint32_t(top.key & 0xffffffffull));
            top_ids[r * n + lane] = id;
            top_logprobs[r * n + lane] = __fsub_rn(l[id], out);
        }
    }
}

__global__ void token_logprobs_kernel(float* out, const float* logits, const float* lse, const int32_t* ids,
                                      int64_t rows, int64_t V) {
    for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
        const int32_t id = ids[r];
        out[r] = id >= 0 && id < V ? __fsub_rn(logits[r * V + id], lse[r]) : __int_as_float(0x7fc00000);
    }
}

}  // namespace

void launch_apply_penalties(float* logits, const int32_t* entries, const int32_t* row_start, const float* params,
                            int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    apply_penalties_kernel<<<unsigned(rows), kPenaltyThreads, 0, stream>>>(logits, entries, row_start, params, cols);
}

void launch_row_logprobs(int32_t* top_ids, float* top_logprobs, float* lse, const float* logits, int64_t rows,
                         int64_t cols, int n, cudaStream_t stream) {
    if (rows <= 0) return;
    row_logprobs_kernel<<<unsigned(rows), kLogprobThreads, 0, stream>>>(top_ids, top_logprobs, lse, logits, cols,
                                                                        n < 0 ? 0 : n);
}

void launch_token_logprobs(float* out, const float* logits, const float* lse, const int32_t* ids, int64_t rows,
                           int64_t cols, cudaStream_t stream) {
    if (rows <= 0) return;
    token_logprobs_kernel<<<grid_1d(rows, 128), 128, 0, stream>>>(out, logits, lse, ids, rows, cols);
}

}  // namespace osprey::backend::cuda
