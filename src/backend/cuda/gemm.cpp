// cuBLAS GEMMs for M > kGemvMaxRows (see gemm.cuh). Row-major out [M, N] = x [M, K] . w [N, K]^T is the
// column-major product out^T [N, M] = w^T . x^T with w read transposed (lda = K) and x as is (ldb = K).
#include <algorithm>
#include <atomic>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm.cuh"

namespace osprey::backend::cuda {

namespace {
std::atomic<uint64_t> g_scratch_epoch{0};
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;
}  // namespace

uint64_t scratch_epoch() { return g_scratch_epoch.load(); }

DeviceScratch::~DeviceScratch() {
    if (data_) cudaFree(data_);
}

void* DeviceScratch::get(size_t n_bytes, cudaStream_t stream) {
    if (n_bytes <= n_bytes_) return data_;
    OSP_CUDA_CHECK(cudaStreamSynchronize(stream));  // work in flight may still read the old area
    if (data_) OSP_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    n_bytes_ = 0;
    const size_t rounded = (n_bytes + (size_t(1) << 20) - 1) & ~((size_t(1) << 20) - 1);
    OSP_CUDA_CHECK(cudaMalloc(&data_, rounded));
    n_bytes_ = rounded;
    g_scratch_epoch++;
    return data_;
}

Gemm::Gemm(cudaStream_t stream) : stream_(stream) {
    OSP_CUBLAS_CHECK(cublasCreate(&handle_));
    OSP_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
    // Default math: CUBLAS_COMPUTE_32F products stay in f32 (no TF32 unless NVIDIA_TF32_OVERRIDE asks for it).
    OSP_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    OSP_CUDA_CHECK(cudaMalloc(&workspace_, kCublasWorkspaceBytes));
    OSP_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, kCublasWorkspaceBytes));
}

Gemm::~Gemm() {
    if (handle_) cublasDestroy(handle_);
    if (workspace_) cudaFree(workspace_);
}

void Gemm::run(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K) {
    const float one = 1.0f, zero = 0.0f;
    const int m = int(M), n = int(N), k = int(K);
    if (w_dtype == DType::F32) {
        OSP_CUBLAS_CHECK(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, static_cast<const float*>(w), k,
                                     x, k, &zero, out, n));
        return;
    }
    // Activations in the weight's 16-bit type (f16 for dequantized block types).
    const DType half_type = w_dtype == DType::BF16 ? DType::BF16 : DType::F16;
    const cudaDataType cuda_type = half_type == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    void* xh = x_scratch_.get(size_t(M * K) * 2, stream_);
    launch_convert_f32(xh, half_type, x, M * K, stream_);
    OSP_CUDA_CHECK_LAUNCH();
    if (w_dtype == DType::F16 || w_dtype == DType::BF16) {
        OSP_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, cuda_type, k, xh, cuda_type,
                                      k, &zero, out, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    const size_t row_bytes = dtype_row_bytes(w_dtype, K);
    const int64_t slice = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(kDequantSliceBytes / (size_t(K) * 2))));
    auto* wh = static_cast<uint16_t*>(w_scratch_.get(size_t(slice * K) * 2, stream_));
    for (int64_t n0 = 0; n0 < N; n0 += slice) {
        const int64_t nn = std::min(slice, N - n0);
        launch_dequantize_f16(wh, w_dtype, static_cast<const char*>(w) + size_t(n0) * row_bytes, nn, K, stream_);
        OSP_CUDA_CHECK_LAUNCH();
        OSP_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(nn), m, k, &one, wh, CUDA_R_16F, k, xh,
                                      CUDA_R_16F, k, &zero, out + n0, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
    }
}

}  // namespace osprey::backend::cuda
