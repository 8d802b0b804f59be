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

// Grid (token, item blocks): one thread per item of a token, in the order q pairs (n_q_heads x half), k pairs
// (n_kv_heads x half), k elements past the rotary dims, v elements. A pair item rotates its two elements in place
// (the pair math of rope.cu, cos/sin from a double angle) and, for k, writes them to the pool slot; the other items
// copy their element to the pool (skipped for slot -1). Each thread reads its token's position, slot and frequency
// before it waits for the kernel before (a programmatic dependent launch), then makes one round trip for its
// elements: a decode token is 14 blocks of a Llama-3.1-8B layer instead of one block looping over 3,584 items.
template <typename T>
__global__ void rope_kv_write_kernel(float* q, float* k, const float* v, const int32_t* positions,
                                     const float* inv_freq, const int32_t* slots, T* k_pool, T* v_pool,
                                     int n_q_heads, int n_kv_heads, int head_dim, int half, bool neox) {
    pdl_release();
    const int64_t t = blockIdx.x;
    const int item = int(blockIdx.y) * int(blockDim.x) + int(threadIdx.x);
    const int q_pairs = n_q_heads * half, k_pairs = n_kv_heads * half, tail = head_dim - 2 * half;
    const int k_tail = n_kv_heads * tail, row = n_kv_heads * head_dim;
    if (item >= q_pairs + k_pairs + k_tail + row) return;
    const int32_t slot = slots[t];
    if (item < q_pairs + k_pairs) {
        const bool is_q = item < q_pairs;
        const int p = is_q ? item : item - q_pairs, h = p / half, i = p % half;
        double sn, cn;
        sincos(double(positions[t]) * double(inv_freq[i]), &sn, &cn);
        const float c = float(cn), s = float(sn);
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        pdl_wait();
        float* r = is_q ? q + (t * n_q_heads + h) * int64_t(head_dim) : k + (t * n_kv_heads + h) * int64_t(head_dim);
        const float a = r[i0], b = r[i1];
        const float ra = a * c - b * s, rb = b * c + a * s;
        r[i0] = ra;
        r[i1] = rb;
        if (!is_q && slot >= 0) {
            T* dst = k_pool + int64_t(slot) * row + int64_t(h) * head_dim;
            dst[i0] = from_f32<T>(ra);
            dst[i1] = from_f32<T>(rb);
        }
        return;
    }
    pdl_wait();
    if (slot < 0) return;
    if (item < q_pairs + k_pairs + k_tail) {  // k elements the rotation leaves alone
        const int e = item - q_pairs - k_pairs, h = e / tail, d = 2 * half + e % tail;
        k_pool[int64_t(slot) * row + int64_t(h) * head_dim + d] = from_f32<T>(k[t * row + int64_t(h) * head_dim + d]);
        return;
    }
    const int e = item - q_pairs - k_pairs - k_tail;
    v_pool[int64_t(slot) * row + e] = from_f32<T>(v[t * row + e]);
}

}  // namespace

void launch_rope_kv_write(float* q, float* k, const float* v, const int32_t* positions, const float* inv_freq,
                          int64_t n_tokens, int n_q_heads, int n_kv_heads, int head_dim, int rotary_dim, bool neox,
                          void* k_pool, void* v_pool, bool f16, const int32_t* slot_mapping, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    const int half = rotary_dim / 2;
    const int items = (n_q_heads + n_kv_heads) * half + n_kv_heads * (head_dim - 2 * half) + n_kv_heads * head_dim;
    constexpr int kThreads = 256;
    const dim3 grid(unsigned(n_tokens), unsigned((items + kThreads - 1) / kThreads));
    if (f16)
        launch_kernel(rope_kv_write_kernel<__half>, grid, kThreads, 0, stream, pdl_enabled(PdlKind::Rope), q, k, v,
                      positions, inv_freq, slot_mapping, static_cast<__half*>(k_pool), static_cast<__half*>(v_pool),
                      n_q_heads, n_kv_heads, head_dim, half, neox);
    else
        launch_kernel(rope_kv_write_kernel<float>, grid, kThreads, 0, stream, pdl_enabled(PdlKind::Rope), q, k, v,
                      positions, inv_freq, slot_mapping, static_cast<float*>(k_pool), static_cast<float*>(v_pool),
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
