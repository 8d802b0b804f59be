#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/norm.cuh"

namespace osprey::backend::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxVecPerThread = 8;  // rows of up to 256 * 8 * 4 = 8192 elements stay in registers

// Sum over the block in a fixed order (warps, then the warp totals in order): batch-invariant.
__device__ __forceinline__ float block_sum(float v, float* partial) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kThreads / 32; i++) total += partial[i];
    return total;
}

// Rows whose length is a multiple of 4 and at most 4 * kThreads * kMaxVecPerThread: the row (after the optional
// residual add, which is written back to x) is held in registers as float4, so x is read once. Every load is issued
// before any is used: w first, before waiting for the kernel before (a programmatic dependent launch), then x and
// delta (all in flight at once; nothing is stored until they are in). out may alias x (every element is read
// before any is written); delta does not.
template <bool kAdd>
__global__ void __launch_bounds__(kThreads) rms_norm_vec_kernel(float* out, float* x, const float* delta,
                                                                const float* w, int64_t d, float eps) {
    // The product that reads out may launch now and stream its weights meanwhile (it waits for this grid).
    pdl_release();
    __shared__ float partial[kThreads / 32];
    const int64_t n_vec = d / 4;
    float4* xr = reinterpret_cast<float4*>(x + int64_t(blockIdx.x) * d);
    const float4* dr = reinterpret_cast<const float4*>(delta + (kAdd ? int64_t(blockIdx.x) * d : 0));
    const float4* wr = reinterpret_cast<const float4*>(w);
    float4 v[kMaxVecPerThread], a[kMaxVecPerThread], g[kMaxVecPerThread];
#pragma unroll
    for (int k = 0; k < kMaxVecPerThread; k++) {
        const int64_t i = threadIdx.x + int64_t(k) * kThreads;
        if (i < n_vec) g[k] = __ldg(wr + i);
    }
    pdl_wait();
#pragma unroll
    for (int k = 0; k < kMaxVecPerThread; k++) {
        const int64_t i = threadIdx.x + int64_t(k) * kThreads;
        if (i < n_vec) {
            v[k] = xr[i];
            if constexpr (kAdd) a[k] = dr[i];
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxVecPerThread; k++) {
        const int64_t i = threadIdx.x + int64_t(k) * kThreads;
        if (i < n_vec) {
            if constexpr (kAdd) {
                v[k].x += a[k].x, v[k].y += a[k].y, v[k].z += a[k].z, v[k].w += a[k].w;
                xr[i] = v[k];
            }
            ss = fmaf(v[k].x, v[k].x, ss);
            ss = fmaf(v[k].y, v[k].y, ss);
            ss = fmaf(v[k].z, v[k].z, ss);
            ss = fmaf(v[k].w, v[k].w, ss);
        }
    }
    const float inv = 1.0f / sqrtf(block_sum(ss, partial) / float(d) + eps);
    float4* orow = reinterpret_cast<float4*>(out + int64_t(blockIdx.x) * d);
#pragma unroll
    for (int k = 0; k < kMaxVecPerThread; k++) {
        const int64_t i = threadIdx.x + int64_t(k) * kThreads;
        if (i < n_vec)
            orow[i] = make_float4(v[k].x * inv * g[k].x, v[k].y * inv * g[k].y, v[k].z * inv * g[k].z,
                                  v[k].w * inv * g[k].w);
    }
}

// Any row length: two passes over the row.
template <bool kAdd>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(float* out, float* x, const float* delta, const float* w,
                                                            int64_t d, float eps) {
    __shared__ float partial[kThreads / 32];
    float* xr = x + int64_t(blockIdx.x) * d;
    float* orow = out + int64_t(blockIdx.x) * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        float v = xr[i];
        if constexpr (kAdd) v += delta[int64_t(blockIdx.x) * d + i], xr[i] = v;
        ss = fmaf(v, v, ss);
    }
    const float inv = 1.0f / sqrtf(block_sum(ss, partial) / float(d) + eps);
    // Each thread rewrites only the elements it read, after the whole row was reduced: out may alias x.
    for (int64_t i = threadIdx.x; i < d; i += kThreads) orow[i] = xr[i] * inv * w[i];
}

template <bool kAdd>
void launch(float* out, float* x, const float* delta, const float* w, int64_t rows, int64_t d, float eps,
            cudaStream_t stream) {
    if (rows <= 0) return;
    const bool aligned = aligned16(out, x, delta, w);
    if (d % 4 == 0 && d <= int64_t(4) * kThreads * kMaxVecPerThread && aligned)
        launch_kernel(rms_norm_vec_kernel<kAdd>, dim3(unsigned(rows)), kThreads, 0, stream, pdl_enabled(PdlKind::Norm),
                      out, x, delta, w, d, eps);
    else
        rms_norm_kernel<kAdd><<<unsigned(rows), kThreads, 0, stream>>>(out, x, delta, w, d, eps);
}

}  // namespace

void launch_rms_norm(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                     cudaStream_t stream) {
    launch<false>(out, const_cast<float*>(x), nullptr, w, rows, d, eps, stream);
}

void launch_add_rms_norm(float* x, const float* delta, float* out, const float* w, int64_t rows, int64_t d, float eps,
                         cudaStream_t stream) {
    launch<true>(out, x, delta, w, rows, d, eps, stream);
}

}  // namespace osprey::backend::cuda
