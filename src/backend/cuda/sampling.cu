// Sampling on the device (Backend::sample_rows, defined in backend/sampling.h): one block of 1024 threads per row.
// Thresholds are found on order-preserving float keys: the top-k key by a bitwise search on counts, the top-p key
// by a bitwise search on weights above a key (32 passes each, only when asked for), the min-p key directly. Every
// float sum is a fixed-order reduction (strided per thread, then a fixed tree), so a row's token depends only on
// its logits and parameters. The draw walks the kept weights in id order: per-thread contiguous chunks, their sums
// scanned in thread order.
#include <cfloat>

#include "backend/cuda/sampling.cuh"
#include "backend/sampling.h"

namespace osprey::backend::cuda {

namespace {

constexpr int kThreads = 1024;

// Fixed-order block sum / max / count (all threads get the result). `scratch` holds 32 values.
template <typename T, typename Op>
__device__ T block_reduce(T v, T* scratch, Op op) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

struct Add {
    template <typename T>
    __device__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ uint32_t operator()(uint32_t a, uint32_t b) const { return a > b ? a : b; }
};

__global__ void __launch_bounds__(kThreads) sample_rows_kernel(int32_t* ids, const float* logits, const SamplingRow* params,
                                                              int64_t V) {
    __shared__ float fscratch[32];
    __shared__ double dscratch[32];
    __shared__ uint32_t uscratch[32];
    __shared__ double chunk_sum[kThreads];  // sums in double, as the reference: float drifts by more than a token
    const int64_t r = blockIdx.x;
    const float* l = logits + r * V;
    const SamplingRow p = params[r];
    const int t = int(threadIdx.x);

    if (!(p.temperature > 0.0f)) {  // greedy: the first maximum
        float best = -INFINITY;
        uint32_t best_i = 0xffffffffu;
        for (int64_t i = t; i < V; i += kThreads)
            if (l[i] > best) best = l[i], best_i = uint32_t(i);
        const float m = block_reduce(best, fscratch, Max{});
        const uint32_t cand = best == m ? ~best_i : 0u;  // the smallest index among the maxima
        const uint32_t first = ~block_reduce(cand, uscratch, Max{});
        if (t == 0) ids[r] = int32_t(first);
        return;
    }
    const float inv_t = 1.0f / p.temperature;
    float m = -INFINITY;
    for (int64_t i = t; i < V; i += kThreads) m = fmaxf(m, l[i] * inv_t);
    m = block_reduce(m, fscratch, Max{});

    uint32_t tau = 0;
    if (p.top_k > 0 && p.top_k < V) {  // the largest key x with #(key >= x) >= k: the k-th largest key
        for (int bit = 31; bit >= 0; bit--) {
            const uint32_t c = tau | (1u << bit);
            uint32_t n = 0;
            for (int64_t i = t; i < V; i += kThreads) n += float_order_key(l[i] * inv_t) >= c;
            if (block_reduce(n, uscratch, Add{}) >= uint32_t(p.top_k)) tau = c;
        }
    }
    auto weight = [&](int64_t i, uint32_t floor) {
        const float s = l[i] * inv_t;
        return float_order_key(s) >= floor ? expf(s - m) : 0.0f;
    };
    if (p.top_p < 1.0f) {
        double z = 0.0;
        for (int64_t i = t; i < V; i += kThreads) z += weight(i, tau);
        const double limit = double(p.top_p) * block_reduce(z, dscratch, Add{});
        // y = the largest key with weight strictly above it >= limit; tokens with key > y are kept.
        uint32_t y = 0;
        bool found = false;
        for (int bit = 31; bit >= 0; bit--) {
            const uint32_t c = y | (1u << bit);
            double above = 0.0;
            for (int64_t i = t; i < V; i += kThreads) {
                const float s = l[i] * inv_t;
                const uint32_t k = float_order_key(s);
                if (k >= tau && k > c) above += expf(s - m);
            }
            if (block_reduce(above, dscratch, Add{}) >= limit) y = c, found = true;
        }
        if (found) tau = max(tau, y + 1);
    }
    if (p.min_p > 0.0f) tau = max(tau, float_order_key(m + logf(p.min_p)));

    // The draw: chunk sums in id order, scanned in thread order.
    const int64_t per = (V + kThreads - 1) / kThreads;
    const int64_t i0 = lmin(V, int64_t(t) * per), i1 = lmin(V, i0 + per);
    double own = 0.0;
    uint32_t last = 0;
    for (int64_t i = i0; i < i1; i++) {
        const float s = l[i] * inv_t;
        if (float_order_key(s) < tau) continue;
        own += expf(s - m);
        last = uint32_t(i) + 1;
    }
    chunk_sum[t] = own;
    const uint32_t last_kept = block_reduce(last, uscratch, Max{});  // 1 + the largest kept id
    __syncthreads();
    if (t == 0) {
        double total = 0.0;
        for (int j = 0; j < kThreads; j++) total += chunk_sum[j];
        const double target = double(sampling_uniform(p.seed, p.counter)) * total;
        double run = 0.0;
        int64_t chosen = int64_t(last_kept) - 1;
        for (int j = 0; j < kThreads; j++) {
            if (run + chunk_sum[j] > target) {
                const int64_t j0 = lmin(V, int64_t(j) * per), j1 = lmin(V, j0 + per);
                for (int64_t i = j0; i < j1; i++) {
                    const float s = l[i] * inv_t;
                    if (float_order_key(s) < tau) continue;
                    run += expf(s - m);
                    if (run > target) {
                        chosen = i;
                        break;
                    }
                }
                break;
            }
            run += chunk_sum[j];
        }
        ids[r] = int32_t(chosen);
    }
}

}  // namespace

void launch_sample_rows(int32_t* ids, const float* logits, const void* params, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    sample_rows_kernel<<<unsigned(rows), kThreads, 0, stream>>>(ids, logits, static_cast<const SamplingRow*>(params),
                                                                cols);
}

}  // namespace osprey::backend::cuda
