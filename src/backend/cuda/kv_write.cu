#include <cuda_fp16.h>

#include "backend/cuda/kv_write.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

template <typename T>
__device__ __forceinline__ T from_f32(float v) {
    if constexpr (sizeof(T) == 2) return __float2half_rn(v);
    else return v;
}

template <typename T>
__global__ void kv_write_kernel(T* k_pool, T* v_pool, const float* k, const float* v, const int32_t* slots,
                                int64_t n_items, int64_t row) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_items;
         i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = i / row, e = i % row;
        const int32_t slot = slots[t];
        if (slot < 0) continue;
        const int64_t dst = int64_t(slot) * row + e;
        k_pool[dst] = from_f32<T>(k[i]);
        v_pool[dst] = from_f32<T>(v[i]);
    }
}

}  // namespace

void launch_kv_write(void* k_pool, void* v_pool, bool f16, const float* k, const float* v,
                     const int32_t* slot_mapping, int64_t n_tokens, int64_t row, cudaStream_t stream) {
    const int64_t n = n_tokens * row;
    if (n <= 0) return;
    if (f16)
        kv_write_kernel<__half><<<grid_1d(n, 256), 256, 0, stream>>>(
            static_cast<__half*>(k_pool), static_cast<__half*>(v_pool), k, v, slot_mapping, n, row);
    else
        kv_write_kernel<float><<<grid_1d(n, 256), 256, 0, stream>>>(
            static_cast<float*>(k_pool), static_cast<float*>(v_pool), k, v, slot_mapping, n, row);
}

}  // namespace osprey::backend::cuda
