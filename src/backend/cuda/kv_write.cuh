// Writes this step's K and V rows [T, row] (f32) into one layer's paged pool at slot_mapping[t]
// (pool element offset slot * row); slots < 0 are skipped. Pool dtype F32 or F16 (round to nearest even).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_kv_write(void* k_pool, void* v_pool, bool f16, const float* k, const float* v,
                     const int32_t* slot_mapping, int64_t n_tokens, int64_t row, cudaStream_t stream);

// RoPE on q [T, n_q_heads * head_dim] and k [T, n_kv_heads * head_dim] in place, then k and v into the pool at
// slot_mapping (fused: one launch per layer instead of three).
void launch_rope_kv_write(float* q, float* k, const float* v, const int32_t* positions, const float* inv_freq,
                          int64_t n_tokens, int n_q_heads, int n_kv_heads, int head_dim, int rotary_dim, bool neox,
                          void* k_pool, void* v_pool, bool f16, const int32_t* slot_mapping, cudaStream_t stream);

}  // namespace osprey::backend::cuda
