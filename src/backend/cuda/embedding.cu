#include "backend/cuda/dequant.cuh"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

// One thread per 8-element group of an output row; plain dtypes whose d is not a multiple of 8 go per element.
template <DType DT, bool kGroups>
__global__ void embedding_kernel(float* out, const uint8_t* table, int64_t n_vocab, int64_t d, size_t row_bytes,
                                 const int32_t* ids, int64_t n_items, float scale) {
    const int64_t per_row = kGroups ? d / 8 : d;
    for (int64_t it = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; it < n_items;
         it += int64_t(gridDim.x) * blockDim.x) {
        const int64_t t = it / per_row, g = it % per_row;
        const int32_t id = ids[t];
        if constexpr (kGroups) {
            float* o = out + t * d + 8 * g;
            if (id < 0 || id >= n_vocab) {
                for (int i = 0; i < 8; i++) o[i] = __int_as_float(0x7fc00000);
                continue;
            }
            float v[8];
            dequant8<DT>(table + size_t(id) * row_bytes, g, v);
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = scale == 1.0f ? v[i] : v[i] * scale;
        } else {
            if constexpr (DT == DType::F32 || DT == DType::F16 || DT == DType::BF16) {
                const float v = (id < 0 || id >= n_vocab) ? __int_as_float(0x7fc00000)
                                                           : load1<DT>(table + size_t(id) * row_bytes, g);
                out[t * d + g] = scale == 1.0f ? v : v * scale;
            }
        }
    }
}

}  // namespace

bool embedding_supported(DType table_dtype) {
    return kernel_weight_dtype(table_dtype);
}

void launch_embedding(float* out, const void* table, DType table_dtype, int64_t n_vocab, int64_t d,
                      const int32_t* ids, int64_t n_tokens, float scale, cudaStream_t stream) {
    if (n_tokens <= 0 || d <= 0) return;
    dispatch_weight_dtype(table_dtype, [&]<DType DT>() {
        const auto* tb = static_cast<const uint8_t*>(table);
        const size_t row_bytes = dtype_row_bytes(DT, d);
        if (d % 8 == 0) {
            const int64_t n = n_tokens * (d / 8);
            embedding_kernel<DT, true><<<grid_1d(n, 256), 256, 0, stream>>>(out, tb, n_vocab, d, row_bytes, ids, n,
                                                                              scale);
        } else {
            const int64_t n = n_tokens * d;
            embedding_kernel<DT, false><<<grid_1d(n, 256), 256, 0, stream>>>(out, tb, n_vocab, d, row_bytes, ids, n,
                                                                               scale);
        }
    });
}

}  // namespace osprey::backend::cuda
