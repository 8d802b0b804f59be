#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/rope.cuh"

namespace osprey::backend::cuda {

namespace {

// One thread per (token, head, rotated pair).
__global__ void rope_kernel(float* x, const int32_t* positions, const float* inv_freq, int64_t n_items, int n_heads,
                            int head_dim, int half, bool neox) {
    for (int64_t it = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; it < n_items;
         it += int64_t(gridDim.x) * blockDim.x) {
        const int i = int(it % half);
        const int64_t th = it / half;  // token * n_heads + head
        const int64_t t = th / n_heads;
        double s, c;
        sincos(double(positions[t]) * double(inv_freq[i]), &s, &c);
        const float cf = float(c), sf = float(s);
        float* v = x + th * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * cf - b * sf;
        v[i1] = b * cf + a * sf;
    }
}

}  // namespace

void launch_rope(float* x, const int32_t* positions, const float* inv_freq, int64_t n_tokens, int n_heads,
                 int head_dim, int rotary_dim, bool neox, cudaStream_t stream) {
    const int half = rotary_dim / 2;
    const int64_t n_items = n_tokens * n_heads * half;
    if (n_items <= 0) return;
    rope_kernel<<<grid_1d(n_items, 256), 256, 0, stream>>>(x, positions, inv_freq, n_items, n_heads, head_dim, half,
                                                           neox);
}

}  // namespace osprey::backend::cuda
