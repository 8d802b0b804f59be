#include "backend/cuda/activation.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

template <GatedAct A>
__device__ __forceinline__ float act(float g) {
    if constexpr (A == GatedAct::Silu) {
        return g / (1.0f + expf(-g));
    } else {
        // 0.5 g (1 + tanh(y)) = g / (1 + exp(-2y)): no cancellation for negative g (as the CPU kernels).
        constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
        return g / (1.0f + expf(-2.0f * kC * (g + 0.044715f * g * g * g)));
    }
}

template <GatedAct A>
__global__ void gated_kernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        out[i] = act<A>(gate[i]) * up[i];
}

template <GatedAct A>
__global__ void gated_fused_kernel(float* out, const float* gu, int64_t n, int64_t cols) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / cols, c = i - r * cols;
        const float* row = gu + r * 2 * cols;
        out[i] = act<A>(row[c]) * row[cols + c];
    }
}

}  // namespace

void launch_gated_activation(float* out, const float* gate, const float* up, int64_t n, GatedAct act,
                             cudaStream_t stream) {
    if (n <= 0) return;
    if (act == GatedAct::Silu) gated_kernel<GatedAct::Silu><<<grid_1d(n, 256), 256, 0, stream>>>(out, gate, up, n);
    else gated_kernel<GatedAct::GeluTanh><<<grid_1d(n, 256), 256, 0, stream>>>(out, gate, up, n);
}

void launch_gated_activation_fused(float* out, const float* gu, int64_t rows, int64_t cols, GatedAct act,
                                   cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    if (act == GatedAct::Silu) gated_fused_kernel<GatedAct::Silu><<<grid_1d(n, 256), 256, 0, stream>>>(out, gu, n, cols);
    else gated_fused_kernel<GatedAct::GeluTanh><<<grid_1d(n, 256), 256, 0, stream>>>(out, gu, n, cols);
}

}  // namespace osprey::backend::cuda
