#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/norm.cuh"

namespace osprey::backend::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) rms_norm_kernel(float* out, const float* x, const float* w, int64_t d,
                                                            float eps) {
    __shared__ float partial[kThreads / 32];
    const float* xr = x + int64_t(blockIdx.x) * d;
    float* orow = out + int64_t(blockIdx.x) * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) ss = fmaf(xr[i], xr[i], ss);
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.0f;
#pragma unroll
    for (int i = 0; i < kThreads / 32; i++) total += partial[i];
    const float inv = 1.0f / sqrtf(total / float(d) + eps);
    // Each thread rewrites only the elements it read, after the whole row was reduced: out may alias x.
    for (int64_t i = threadIdx.x; i < d; i += kThreads) orow[i] = xr[i] * inv * w[i];
}

}  // namespace

void launch_rms_norm(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                     cudaStream_t stream) {
    if (rows <= 0) return;
    rms_norm_kernel<<<unsigned(rows), kThreads, 0, stream>>>(out, x, w, d, eps);
}

}  // namespace osprey::backend::cuda
