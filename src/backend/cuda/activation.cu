#include "backend/cuda/activation.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

template <GatedAct A>
__global__ void gated_kernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float g = gate[i];
        float a;
        if constexpr (A == GatedAct::Silu) {
            a = g / (1.0f + expf(-g));
        } else {
            // 0.5 g (1 + tanh(y)) = g / (1 + exp(-2y)): no cancellation for negative g (as the CPU kernels).
            constexpr float kC = 0.7978845608028654f;  // sqrt(2 / pi)
            a = g / (1.0f + expf(-2.0f * kC * (g + 0.044715f * g * g * g)));
        }
        out[i] = a * up[i];
    }
}

}  // namespace

void launch_gated_activation(float* out, const float* gate, const float* up, int64_t n, GatedAct act,
                             cudaStream_t stream) {
    if (n <= 0) return;
    if (act == GatedAct::Silu) gated_kernel<GatedAct::Silu><<<grid_1d(n, 256), 256, 0, stream>>>(out, gate, up, n);
    else gated_kernel<GatedAct::GeluTanh><<<grid_1d(n, 256), 256, 0, stream>>>(out, gate, up, n);
}

}  // namespace osprey::backend::cuda
