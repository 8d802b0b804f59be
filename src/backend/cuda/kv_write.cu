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

// One block per token: rotate its q and k heads in place (the pair math of rope.cu, cos/sin from a double angle),
// then write its k and v rows into the pool slot (skipped for slot -1).
template <typename T>
__global__ void rope_kv_write_kernel(float* q, float* k, const float* v, const int32_t* positions,
                                     const float* inv_freq, const int32_t* slots, T* k_pool, T* v_pool,
                                     int n_q_heads, int n_kv_heads, int head_dim, int half, bool neox) {
    extern __shared__ float cs[];  // [2 * half]: cos, then sin
    const int64_t t = blockIdx.x;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        double s, c;
        sincos(double(positions[t]) * double(inv_freq[i]), &s, &c);
        cs[i] = float(c), cs[half + i] = float(s);
    }
    __syncthreads();
    auto rotate = [&](float* x, int n_heads) {
        for (int it = threadIdx.x; it < n_heads * half; it += blockDim.x) {
            const int h = it / half, i = it % half;
            float* r = x + (t * n_heads + h) * int64_t(head_dim);
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            const float a = r[i0], b = r[i1], c = cs[i], s = cs[half + i];
            r[i0] = a * c - b * s;
            r[i1] = b * c + a * s;
        }
    };
    rotate(q, n_q_heads);
    rotate(k, n_kv_heads);
    const int32_t slot = slots[t];
    if (slot < 0) return;
    __syncthreads();  // the whole k row is rotated before it is copied
    const int64_t row = int64_t(n_kv_heads) * head_dim;
    for (int64_t e = threadIdx.x; e < row; e += blockDim.x) {
        k_pool[int64_t(slot) * row + e] = from_f32<T>(k[t * row + e]);
        v_pool[int64_t(slot) * row + e] = from_f32<T>(v[t * row + e]);
    }
}

}  // namespace

void launch_rope_kv_write(float* q, float* k, const float* v, const int32_t* positions, const float* inv_freq,
                          int64_t n_tokens, int n_q_heads, int n_kv_heads, int head_dim, int rotary_dim, bool neox,
                          void* k_pool, void* v_pool, bool f16, const int32_t* slot_mapping, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const int half = rotary_dim / 2;
    const size_t smem = size_t(2 * half) * sizeof(float);
    if (f16)
        rope_kv_write_kernel<__half><<<unsigned(n_tokens), 256, smem, stream>>>(
            q, k, v, positions, inv_freq, slot_mapping, static_cast<__half*>(k_pool), static_cast<__half*>(v_pool),
            n_q_heads, n_kv_heads, head_dim, half, neox);
    else
        rope_kv_write_kernel<float><<<unsigned(n_tokens), 256, smem, stream>>>(
            q, k, v, positions, inv_freq, slot_mapping, static_cast<float*>(k_pool), static_cast<float*>(v_pool),
            n_q_heads, n_kv_heads, head_dim, half, neox);
}

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
