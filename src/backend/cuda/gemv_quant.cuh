// Matrix-vector products for small batches: out [M, N] f32 = x [M, K] f32 . w [N, K]^T for M <= kGemvMaxRows,
// with w of any supported weight dtype (F32, F16, BF16 and the GGUF block types) dequantized in the kernel and
// multiplied with f32 activations in f32. Batch-invariant: out[m, n] is one warp's (long plain rows: one block's)
// fixed-order reduction over K whatever M is, whichever row group m falls in and whichever other weights share the
// launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"

namespace osprey::backend::cuda {

constexpr int kGemvMaxRows = 4;  // the CUDA backend's block-type threshold (cuda_backend.cpp, use_gemv)
constexpr int kMaxGemvJobs = 4;

struct GemvJob {
    const void* w;  // [n, K]
    float* out;     // [M, n]
    int64_t n;
    DType dtype;
};

bool gemv_supported(DType w_dtype);
// Launch on `stream`; the caller checks cudaGetLastError(). M in 1..kGemvMaxRows.
void launch_gemv(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K,
                 cudaStream_t stream);
// Several weights against the same x (n_jobs <= kMaxGemvJobs): one launch per dtype (q/k/v of a Q4_K_M file: Q4_K
// q and k together, Q6_K v), x quantized once for all the integer-path launches. Each output is bit-identical to
// launch_gemv's for its weight alone.
void launch_gemv_multi(const GemvJob* jobs, int n_jobs, const float* x, int64_t M, int64_t K, cudaStream_t stream);
// out [M, N] = act(x . w_gate^T) * (x . w_up^T), act SiLU (silu) or tanh-GELU.
void launch_gemv_gated(float* out, const float* x, DType w_dtype, const void* w_gate, const void* w_up, int64_t M,
                       int64_t N, int64_t K, bool silu, cudaStream_t stream);

}  // namespace osprey::backend::cuda
