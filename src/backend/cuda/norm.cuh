// RMSNorm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w, one block per row; out may alias x.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_rms_norm(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps,
                     cudaStream_t stream);

}  // namespace osprey::backend::cuda
