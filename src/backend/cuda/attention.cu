#include <cuda_fp16.h>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

__device__ __forceinline__ float load_kv(const float* p) { return *p; }
__device__ __forceinline__ float load_kv(const __half* p) { return __half2float(*p); }

// KV: float or __half; VEC: head dims per lane (head_dim <= 32 * VEC); NW: warps per block.
template <typename KV, int VEC, int NW>
__global__ void __launch_bounds__(NW * 32) paged_attention_kernel(PagedAttentionArgs a) {
    extern __shared__ float smem[];  // [NW, head_dim] weighted V, then NW maxima and NW sums
    const int t = blockIdx.x, h = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int hd = a.head_dim;

    // The sequence of token t: the last s with query_start[s] <= t.
    int s_lo = 0, s_hi = a.n_seqs - 1;
    while (s_lo < s_hi) {
        const int mid = (s_lo + s_hi + 1) / 2;
        if (a.query_start[mid] <= t) s_lo = mid;
        else s_hi = mid - 1;
    }
    const int pos = a.positions[t];
    const int first = a.window > 0 ? max(0, pos - a.window + 1) : 0;
    const int kvh = h / (a.n_heads / a.n_kv_heads);
    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s_lo) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd;
    const KV* kbase = static_cast<const KV*>(a.k_pool) + int64_t(kvh) * hd;
    const KV* vbase = static_cast<const KV*>(a.v_pool) + int64_t(kvh) * hd;

    const float* qv = a.q + (int64_t(t) * a.n_heads + h) * hd;
    float qr[VEC], acc[VEC];
#pragma unroll
    for (int i = 0; i < VEC; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < hd ? qv[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = first + warp; j <= pos; j += NW) {
        const int64_t off = (int64_t(table[j / bs]) * bs + j % bs) * kv_row;
        const KV* kp = kbase + off;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            const int d = lane + 32 * i;
            if (d < hd) dot = fmaf(qr[i], load_kv(kp + d), dot);
        }
        float sc = warp_sum(dot) * a.scale;
        if (a.softcap > 0.0f) sc = a.softcap * tanhf(sc / a.softcap);
        const float m_new = fmaxf(m, sc);
        const float corr = expf(m - m_new), p = expf(sc - m_new);
        l = l * corr + p;
        const KV* vp = vbase + off;
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            const int d = lane + 32 * i;
            if (d < hd) acc[i] = fmaf(p, load_kv(vp + d), acc[i] * corr);
        }
        m = m_new;
    }

    float* s_acc = smem;
    float* s_max = smem + NW * hd;
    float* s_sum = s_max + NW;
#pragma unroll
    for (int i = 0; i < VEC; i++) {
        const int d = lane + 32 * i;
        if (d < hd) s_acc[warp * hd + d] = acc[i];
    }
    if (lane == 0) {
        s_max[warp] = m;
        s_sum[warp] = l;
    }
    __syncthreads();
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; w++) mx = fmaxf(mx, s_max[w]);
    float f[NW], total = 0.0f;
#pragma unroll
    for (int w = 0; w < NW; w++) {
        f[w] = s_max[w] == -INFINITY ? 0.0f : expf(s_max[w] - mx);  // warps that saw no key weigh nothing
        total += s_sum[w] * f[w];
    }
    const float inv = 1.0f / total;
    float* o = a.out + (int64_t(t) * a.n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += NW * 32) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) v = fmaf(s_acc[w * hd + d], f[w], v);
        o[d] = v * inv;
    }
}

template <typename KV, int VEC>
void launch_vec(const PagedAttentionArgs& a, cudaStream_t stream) {
    const dim3 grid(unsigned(a.n_tokens), unsigned(a.n_heads));
    // A fixed warp count (not chosen from the batch) keeps every token's reduction order batch-invariant.
    constexpr int kNw = 8;
    const size_t smem = size_t(kNw) * (a.head_dim + 2) * sizeof(float);
    paged_attention_kernel<KV, VEC, kNw><<<grid, kNw * 32, smem, stream>>>(a);
}

template <typename KV>
void launch_kv(const PagedAttentionArgs& a, cudaStream_t stream) {
    const int vec = (a.head_dim + 31) / 32;
    if (vec <= 1) launch_vec<KV, 1>(a, stream);
    else if (vec == 2) launch_vec<KV, 2>(a, stream);
    else if (vec == 3) launch_vec<KV, 3>(a, stream);
    else if (vec == 4) launch_vec<KV, 4>(a, stream);
    else if (vec <= 6) launch_vec<KV, 6>(a, stream);
    else launch_vec<KV, 8>(a, stream);
}

}  // namespace

void launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t stream) {
    if (a.n_tokens <= 0 || a.n_heads <= 0) return;
    if (a.kv_f16) launch_kv<__half>(a, stream);
    else launch_kv<float>(a, stream);
}

}  // namespace osprey::backend::cuda
