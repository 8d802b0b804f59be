// Tensor-core GEMM that reads GGUF block weights directly (decode batches above the GEMV's rows):
// out [M, N] f32 = xh [M, K] f16 . w [N, K]^T, w rows of blocks of dtype dt (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K).
// Each CTA streams the raw blocks of its weight rows and its x rows through shared memory (cp.async, several
// stages), dequantizes the weights into mma.sync m16n8k16 fragments with the f16 values of launch_dequantize_f16
// (the same f32 arithmetic as dequant.cuh's dequant8, rounded to f16), and accumulates in f32. Small grids split K
// (f32 partials in a workspace, summed in a fixed order afterwards: the result does not depend on timing).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace osprey::backend::cuda {

// Whether the kernel handles weights of dtype dt with rows of K elements (K a multiple of the block size).
bool quant_gemm_supported(DType dt, int64_t K);

// The launch shape of one product: tile configuration, K splits and the workspace they need.
struct QuantGemmPlan {
    int config = 0;              // index into the kernel's tile configurations (by M)
    int splits = 1;              // K ranges computed by separate CTAs (1: out is written directly)
    size_t workspace_bytes = 0;  // splits * M * N f32 partials when splits > 1
};
QuantGemmPlan plan_quant_gemm(DType dt, int64_t M, int64_t N, int64_t K);

// out [M, N] f32 = xh [M, K] f16 (row-major) . w [N, K]^T, for quant_gemm_supported(dt, K); workspace:
// plan.workspace_bytes of device memory. The caller checks the launch (cudaGetLastError).
void launch_quant_gemm(const QuantGemmPlan& plan, float* out, const void* xh, DType dt, const void* w, int64_t M,
                       int64_t N, int64_t K, float* workspace, cudaStream_t stream);

}  // namespace osprey::backend::cuda
