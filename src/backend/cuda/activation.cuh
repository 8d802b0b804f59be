// Gated activations: out = act(gate) * up elementwise (SiLU or tanh-approximate GELU); out may alias gate.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

enum class GatedAct { Silu, GeluTanh };

void launch_gated_activation(float* out, const float* gate, const float* up, int64_t n, GatedAct act,
                             cudaStream_t stream);
// The same from one fused product: out [rows, cols] = act(gu[:, :cols]) * gu[:, cols:], gu [rows, 2 * cols].
void launch_gated_activation_fused(float* out, const float* gu, int64_t rows, int64_t cols, GatedAct act,
                                   cudaStream_t stream);

}  // namespace osprey::backend::cuda
