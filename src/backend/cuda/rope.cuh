// Rotary position embedding in place: x [T, n_heads * head_dim] f32, positions i32 [T], inv_freq f32
// [rotary_dim / 2]. neox: rotate (i, i + rotary_dim / 2); otherwise adjacent pairs (2i, 2i + 1).
// Angles pos * inv_freq and their sine/cosine are computed in double, as the CPU backend does.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_rope(float* x, const int32_t* positions, const float* inv_freq, int64_t n_tokens, int n_heads,
                 int head_dim, int rotary_dim, bool neox, cudaStream_t stream);

}  // namespace osprey::backend::cuda
