// Error checks for CUDA runtime and cuBLAS calls: a failure throws osprey::Error naming the call, file and line.
// Host code only (includes fmt through core/error.h); kernels' .cu files report through their launchers' callers.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.h"

namespace osprey::backend::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
    const ErrorCode code = e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Internal;
    raise(code, "{}:{}: {} failed: {} ({})", file, line, call, cudaGetErrorName(e), cudaGetErrorString(e));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
    const ErrorCode code = s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::OutOfMemory : ErrorCode::Internal;
    raise(code, "{}:{}: {} failed: {} ({})", file, line, call, cublasGetStatusName(s), cublasGetStatusString(s));
}

}  // namespace osprey::backend::cuda

#define OSP_CUDA_CHECK(call)                                                                  \
    do {                                                                                      \
        const cudaError_t osp_cuda_err_ = (call);                                             \
        if (osp_cuda_err_ != cudaSuccess)                                                     \
            ::osprey::backend::cuda::throw_cuda_error(osp_cuda_err_, #call, __FILE__, __LINE__); \
    } while (0)

#define OSP_CUBLAS_CHECK(call)                                                                  \
    do {                                                                                        \
        const cublasStatus_t osp_cublas_st_ = (call);                                           \
        if (osp_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                            \
            ::osprey::backend::cuda::throw_cublas_error(osp_cublas_st_, #call, __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: a bad configuration or an earlier asynchronous fault surfaces here.
#define OSP_CUDA_CHECK_LAUNCH() OSP_CUDA_CHECK(cudaGetLastError())
