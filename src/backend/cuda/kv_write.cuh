// Writes this step's K and V rows [T, row] (f32) into one layer's paged pool at slot_mapping[t]
// (pool element offset slot * row); slots < 0 are skipped. Pool dtype F32 or F16 (round to nearest even).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_kv_write(void* k_pool, void* v_pool, bool f16, const float* k, const float* v,
                     const int32_t* slot_mapping, int64_t n_tokens, int64_t row, cudaStream_t stream);

}  // namespace osprey::backend::cuda
