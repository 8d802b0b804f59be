// Penalties and log-probabilities on the device (see backend/sampling.h for the rules).
// - apply_penalties: one block per row, one thread per (distinct) history entry; the float operations are the
//   host's, each rounded once (apply_penalties_entry), so the row matches the host sampler's bit for bit.
// - row_logprobs: one block of 512 threads per row. One pass keeps the row maximum and each thread's best n
//   (value, id) keys in registers (a sorted list, insertion by compare-swap); a second pass sums exp(double(l - m))
//   in double, per thread in id-stride order and then a fixed butterfly tree, so the result is deterministic and
//   differs from the host's sequential double sum only by the summation order (the float lse agrees to ~1 ulp). The
//   top n are merged by n rounds of a block-wide maximum over the threads' list heads.
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
struct MaxU64 {
    __device__ unsigned long long operator()(unsigned long long a, unsigned long long b) const { return a > b ? a : b; }
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

// K: the capacity of each thread's list (>= n); K == 0: only the log-sum-exp.
template <int K>
__global__ void __launch_bounds__(kLogprobThreads) row_logprobs_kernel(int32_t* top_ids, float* top_logprobs,
                                                                      float* lse, const float* logits, int64_t V,
                                                                      int n) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    __shared__ unsigned long long uscratch[32];
    const int64_t r = blockIdx.x;
    const float* l = logits + r * V;
    const int t = int(threadIdx.x);

    unsigned long long best[K > 0 ? K : 1];
#pragma unroll
    for (int j = 0; j < (K > 0 ? K : 1); j++) best[j] = 0;
    float m = -INFINITY;
    for (int64_t i = t; i < V; i += kLogprobThreads) {
        const float v = l[i];
        m = fmaxf(m, v);
        if constexpr (K > 0) {
            unsigned long long k = logit_rank_key(v, int32_t(i));
            if (k > best[K - 1]) {
#pragma unroll
                for (int j = 0; j < K; j++)
                    if (k > best[j]) {
                        const unsigned long long b = best[j];
                        best[j] = k;
                        k = b;
                    }
            }
        }
    }
    m = block_reduce(m, fscratch, -INFINITY, MaxF{});

    float out = m;  // a row whose maximum is not finite: the host returns the maximum
    if (isfinite(m)) {
        double s = 0.0;
        for (int64_t i = t; i < V; i += kLogprobThreads) s += exp(double(__fsub_rn(l[i], m)));
        s = block_reduce(s, dscratch, 0.0, AddD{});
        out = __fadd_rn(m, float(log(s)));
    }
    if (t == 0) lse[r] = out;

    if constexpr (K > 0) {
        for (int j = 0; j < n; j++) {
            const unsigned long long head = best[0];
            const unsigned long long w = block_reduce(head, uscratch, 0ull, MaxU64{});
            if (w != 0 && head == w) {  // keys are unique: exactly one thread owns the winner
#pragma unroll
                for (int q = 0; q + 1 < K; q++) best[q] = best[q + 1];
                best[K - 1] = 0;
            }
            if (t == 0) {
                if (w == 0) {  // fewer than n values in the row
                    top_ids[r * n + j] = -1;
                    top_logprobs[r * n + j] = -INFINITY;
                } else {
                    const int32_t id = int32_t(0xffffffffu - uint32_t(w & 0xffffffffull));
                    top_ids[r * n + j] = id;
                    top_logprobs[r * n + j] = __fsub_rn(l[id], out);
                }
            }
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
    const unsigned grid = unsigned(rows);
    if (n <= 0)
        row_logprobs_kernel<0><<<grid, kLogprobThreads, 0, stream>>>(top_ids, top_logprobs, lse, logits, cols, 0);
    else if (n == 1)
        row_logprobs_kernel<1><<<grid, kLogprobThreads, 0, stream>>>(top_ids, top_logprobs, lse, logits, cols, n);
    else if (n <= 8)
        row_logprobs_kernel<8><<<grid, kLogprobThreads, 0, stream>>>(top_ids, top_logprobs, lse, logits, cols, n);
    else
        row_logprobs_kernel<20><<<grid, kLogprobThreads, 0, stream>>>(top_ids, top_logprobs, lse, logits, cols, n);
}

void launch_token_logprobs(float* out, const float* logits, const float* lse, const int32_t* ids, int64_t rows,
                           int64_t cols, cudaStream_t stream) {
    if (rows <= 0) return;
    token_logprobs_kernel<<<grid_1d(rows, 128), 128, 0, stream>>>(out, logits, lse, ids, rows, cols);
}

}  // namespace osprey::backend::cuda
