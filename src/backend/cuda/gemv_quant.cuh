// Matrix-vector products for small batches: out [M, N] f32 = x [M, K] f32 . w [N, K]^T for M <= kGemvMaxRows,
// with w of any supported weight dtype (F32, F16, BF16 and the GGUF block types) dequantized in the kernel and
// multiplied with f32 activations in f32. Batch-invariant: out[m, n] is one warp's fixed-order reduction over K
// whatever M is and whichever row group m falls in.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace osprey::backend::cuda {

constexpr int kGemvMaxRows = 8;

bool gemv_supported(DType w_dtype);
// Launches on `stream`; the caller checks cudaGetLastError(). M in 1..kGemvMaxRows.
void launch_gemv(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K,
                 cudaStream_t stream);

}  // namespace osprey::backend::cuda
