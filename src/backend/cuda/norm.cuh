// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w, one block per row; out may alias x.
// add_rms_norm fuses the residual add before it: x += delta (written back), then out = rms_norm(x) * w.
// The sum of squares is reduced in a fixed order that depends only on the row length (batch-invariant).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_rms_norm(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                     cudaStream_t stream);
void launch_add_rms_norm(float* x, const float* delta, float* out, const float* w, int64_t rows, int64_t d, float eps,
                         cudaStream_t stream);

}  // namespace osprey::backend::cuda
