// Embedding gather: out [T, d] f32 = dequant(table [V, d])[ids[t], :] * scale for any supported weight dtype.
// An id outside [0, V) yields a row of NaN (ids are validated at admission; this makes a bad one loud).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace osprey::backend::cuda {

bool embedding_supported(DType table_dtype);
void launch_embedding(float* out, const void* table, DType table_dtype, int64_t n_vocab, int64_t d,
                      const int32_t* ids, int64_t n_tokens, float scale, cudaStream_t stream);

}  // namespace osprey::backend::cuda
