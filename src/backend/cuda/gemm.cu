// Operand conversions before the cuBLAS GEMMs of gemm.cpp.
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemm.cuh"

namespace osprey::backend::cuda {

namespace {

__global__ void convert_f16_kernel(__half* dst, const float* x, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = __float2half_rn(x[i]);
}

__global__ void convert_bf16_kernel(__nv_bfloat16* dst, const float* x, int64_t n) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = __float2bfloat16_rn(x[i]);
}

// One thread per 8-element group of the [n_rows, K] matrix.
template <DType DT>
__global__ void dequantize_f16_kernel(__half* dst, const uint8_t* w, int64_t n_rows, int64_t K, size_t row_bytes) {
    const int64_t groups_per_row = K / 8;
    const int64_t n_groups = n_rows * groups_per_row;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_groups;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / groups_per_row, g = i % groups_per_row;
        float v[8];
        dequant8<DT>(w + size_t(r) * row_bytes, g, v);
        __half* d = dst + r * K + 8 * g;
#pragma unroll
        for (int j = 0; j < 8; j++) d[j] = __float2half_rn(v[j]);
    }
}

unsigned grid_for(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return unsigned(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

}  // namespace

void launch_convert_f32(void* dst, DType to, const float* x, int64_t n, cudaStream_t stream) {
    if (to == DType::F16) convert_f16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<__half*>(dst), x, n);
    else convert_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), x, n);
}

void launch_dequantize_f16(uint16_t* dst, DType w_dtype, const void* w, int64_t n_rows, int64_t K,
                           cudaStream_t stream) {
    dispatch_weight_dtype(w_dtype, [&]<DType DT>() {
        const int64_t n_groups = n_rows * (K / 8);
        dequantize_f16_kernel<DT><<<grid_for(n_groups, 256), 256, 0, stream>>>(
            reinterpret_cast<__half*>(dst), static_cast<const uint8_t*>(w), n_rows, K, dtype_row_bytes(DT, K));
    });
}

}  // namespace osprey::backend::cuda
