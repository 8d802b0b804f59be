// Large-batch matrix products through cuBLAS: out [M, N] f32 = x [M, K] f32 . w [N, K]^T.
// - F32 weights: SGEMM in f32 (no TF32).
// - F16 / BF16 weights: x is rounded to the weight's type, then a tensor-core GEMM with f32 accumulation.
// - GGUF block weights: x is rounded to f16; up to kQuantGemmMaxRows rows (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K) the
//   tensor-core GEMM of gemm_quant.cuh reads the blocks directly; otherwise rows of w are dequantized to f16 in
//   slices of at most kDequantSliceBytes and each slice goes through the f16 GEMM. OSPREY_QGEMM=0 / 1 (tuning and
//   tests) forces the slice path / the direct kernel at every M.
// The conversion kernels live in gemm.cu (nvcc); the cuBLAS calls and scratch in gemm.cpp (host compiler).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

#include "core/dtype.h"

namespace osprey::backend::cuda {

constexpr size_t kDequantSliceBytes = size_t(64) << 20;
constexpr int64_t kQuantGemmMaxRows = 256;

// dst[i] = f16 or bf16 (to) of x[i], i < n.
void launch_convert_f32(void* dst, DType to, const float* x, int64_t n, cudaStream_t stream);
// dst [n_rows, K] f16 = rows of w (a GGUF block dtype); K a multiple of the block size.
void launch_dequantize_f16(uint16_t* dst, DType w_dtype, const void* w, int64_t n_rows, int64_t K,
                           cudaStream_t stream);

// A growable device scratch area. get() synchronizes the stream before it frees the old area.
// Every move bumps scratch_epoch(): op graphs recorded before it read the old area and must be captured again.
uint64_t scratch_epoch();

class DeviceScratch {
  public:
    DeviceScratch() = default;
    ~DeviceScratch();
    DeviceScratch(const DeviceScratch&) = delete;
    DeviceScratch& operator=(const DeviceScratch&) = delete;
    void* get(size_t n_bytes, cudaStream_t stream);

  private:
    void* data_ = nullptr;
    size_t n_bytes_ = 0;
};

// cuBLAS state of one backend (handle bound to its stream) and the scratch for converted operands.
class Gemm {
  public:
    explicit Gemm(cudaStream_t stream);
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;

    void run(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K);

  private:
    // A cuBLASLt plan of one 16-bit product shape: descriptors and the chosen algorithm.
    struct LtPlan {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
        bool ok = false;
    };
    using PlanKey = std::tuple<int, int64_t, int64_t, int64_t>;  // (cuda type, M, N, K)
    bool run_lt(float* out, const void* xh, cudaDataType type, const void* w, int64_t M, int64_t N, int64_t K);
    LtPlan& lt_plan(cudaDataType type, int64_t M, int64_t N, int64_t K);
    void lt_choose(LtPlan& plan, float* out, const void* xh, const void* w, int64_t M, int64_t N, int64_t K);

    cudaStream_t stream_;
    cublasHandle_t handle_ = nullptr;
    cublasLtHandle_t lt_ = nullptr;
    std::map<PlanKey, LtPlan> plans_;
    std::map<PlanKey, cublasLtMatmulAlgo_t> tuned_;  // (type, M bucket, N, K) -> the fastest measured algorithm
    void* workspace_ = nullptr;  // cuBLAS's own, set explicitly so that graph capture never allocates
    DeviceScratch x_scratch_, w_scratch_, split_scratch_;  // split_scratch_: the direct kernel's K-split partials
};

}  // namespace osprey::backend::cuda
