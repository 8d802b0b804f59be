// Tiled flash attention (f32 SIMT) for sequences with two or more query tokens (prefill, chunked prefill) when the
// tensor-core kernel (attention_prefill_mma.cu) does not apply: f32 pools, head sizes not a multiple of 8.
// Rows: the query rows of a sequence for one KV head are (token i, query head g of that KV head), row i * group + g.
// Grid (tile slots, n_kv_heads), 256 threads as 16 x 16 (ty, tx). Sequence s owns the tile slots
// [prefill_tile_base(s), prefill_tile_base(s + 1)) = [ceil(query_start[s] * group / 64) + s, ...), enough for its
// ceil(n_q * group / 64) tiles (the rest exit at once), so a block finds its sequence by a binary search and the
// host needs no per-sequence counts (prefill_tile_of, attention_common.cuh). A block holds 64 rows' queries (times scale) in shared
// memory and walks key tiles of 64 keys at key indices aligned to multiples of 64, from the tile containing the
// smallest first visible key of its rows to their largest position. Per key tile: K staged (f32) through the
// block table, thread (ty, tx) scores rows 4ty..4ty+3 against keys tx + 16j (j < 4), an online softmax per row
// (max over the 16 lanes of a row, per-lane partial sums), weights P to shared memory, V staged over K, then
// the thread accumulates rows 4ty..4ty+3 times columns 64jj + 4tx..+3.
// Batch invariance: a key tile that holds no key visible to a row changes nothing in the row's state (weights
// exactly 0, rescale factor exactly 1, or 0 on a state still empty), and tile edges are fixed key indices, so a
// row's result depends only on its query, its position and its sequence's keys, not on the rows it shares a
// tile with or on the rest of the batch.
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/attention_common.cuh"

namespace osprey::backend::cuda::attn {

namespace {

constexpr int kTile = 64, kThreads = 256, kPst = kTile + 4;

template <typename KV, int HDP>
struct PrefillShape {
    static constexpr int VE = 16 / int(sizeof(KV));
    static constexpr int NV = HDP / VE;
    static constexpr int ST = HDP + 4;  // f32 row stride: rows 4 banks apart
    static constexpr int NJ = HDP / 64;
    static constexpr size_t smem = (size_t(2) * kTile * ST + size_t(kTile) * kPst) * 4;
};

// dst [kTile][ST] f32 = the pool rows of the slots (slot < 0: a zero row), zero beyond hd.
template <typename KV, int HDP>
__device__ __forceinline__ void stage_tile(float* dst, const KV* pool, const int* slot, int64_t kv_row,
                                           int64_t head_off, int hd, bool vec_ok, int tid) {
    using Sh = PrefillShape<KV, HDP>;
    constexpr int kPer = kTile * Sh::NV / kThreads;
    if (vec_ok) {
#pragma unroll
        for (int k0 = 0; k0 < kPer; k0 += 8) {
            uint4 buf[8];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (k0 + k >= kPer) break;
                const int idx = tid + kThreads * (k0 + k), r = idx / Sh::NV, v = idx % Sh::NV;
                buf[k] = make_uint4(0u, 0u, 0u, 0u);
                if (slot[r] >= 0 && v * Sh::VE < hd)
                    buf[k] = __ldg(reinterpret_cast<const uint4*>(pool + int64_t(slot[r]) * kv_row + head_off +
                                                                   v * Sh::VE));
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                if (k0 + k >= kPer) break;
                const int idx = tid + kThreads * (k0 + k), r = idx / Sh::NV, v = idx % Sh::NV;
                float f[Sh::VE];
                vec_to_float(buf[k], f);
                float4* d4 = reinterpret_cast<float4*>(dst + r * Sh::ST + v * Sh::VE);
#pragma unroll
                for (int u = 0; u < Sh::VE / 4; u++) d4[u] = make_float4(f[4 * u], f[4 * u + 1], f[4 * u + 2], f[4 * u + 3]);
            }
        }
    } else {
        for (int idx = tid; idx < kTile * HDP; idx += kThreads) {
            const int r = idx / HDP, d = idx % HDP;
            dst[r * Sh::ST + d] =
                slot[r] >= 0 && d < hd ? kv_to_float(pool[int64_t(slot[r]) * kv_row + head_off + d]) : 0.0f;
        }
    }
}


template <typename KV, int HDP>
__global__ void __launch_bounds__(kThreads, HDP <= 128 ? 2 : 1) prefill_tile_kernel(PagedAttentionArgs a, bool vec_ok) {
    using Sh = PrefillShape<KV, HDP>;
    const int group = a.n_heads / a.n_kv_heads, kvh = int(blockIdx.y);
    PrefillTile pt;
    if (!prefill_tile_of<kTile>(a, blockIdx.x, group, pt)) return;
    const int s = pt.s, t0 = pt.t0, r0 = pt.r0, n_rows = pt.n_rows;
    const int hd = a.head_dim, tid = int(threadIdx.x), ty = tid >> 4, tx = tid & 15;

    extern __shared__ __align__(16) float smem[];
    float* qs = smem;                      // [kTile][ST]
    float* kvs = qs + kTile * Sh::ST;      // [kTile][ST]
    float* ps = kvs + kTile * Sh::ST;      // [kTile][kPst]
    __shared__ int row_pos[kTile], row_first[kTile], slots[kTile];

    load_row_windows<kTile>(row_pos, row_first, tid, a, pt, group);
    const float qmul = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
    for (int idx = tid; idx < kTile * HDP; idx += kThreads) {
        const int r = idx / HDP, d = idx % HDP;
        float x = 0.0f;
        if (r < n_rows && d < hd) {
            const int rg = r0 + r, tok = t0 + rg / group, h = kvh * group + rg % group;
            x = a.q[(int64_t(tok) * a.n_heads + h) * hd + d] * qmul;
        }
        qs[r * Sh::ST + d] = x;
    }
    __syncthreads();
    int k_min = INT_MAX, k_max = -1;
    for (int r = 0; r < n_rows; r++) k_min = min(k_min, row_first[r]), k_max = max(k_max, row_pos[r]);

    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd, head_off = int64_t(kvh) * hd;
    const KV* kpool = static_cast<const KV*>(a.k_pool);
    const KV* vpool = static_cast<const KV*>(a.v_pool);

    float m[4], l[4], o[4][Sh::NJ * 4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < Sh::NJ * 4; e++) o[i][e] = 0.0f;
    }

    for (int kt = k_min / kTile * kTile; kt <= k_max; kt += kTile) {
        __syncthreads();  // the previous tile's V and weights are no longer read
        if (tid < kTile) {
            const int j = kt + tid;
            slots[tid] = j >= k_min && j <= k_max ? table[j / bs] * bs + j % bs : -1;
        }
        __syncthreads();
        stage_tile<KV, HDP>(kvs, kpool, slots, kv_row, head_off, hd, vec_ok, tid);
        __syncthreads();

        float sc[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) sc[i][j] = 0.0f;
#pragma unroll 2
        for (int d = 0; d < HDP; d += 4) {
            float4 qv[4], kv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) qv[i] = *reinterpret_cast<const float4*>(qs + (ty * 4 + i) * Sh::ST + d);
#pragma unroll
            for (int j = 0; j < 4; j++) kv[j] = *reinterpret_cast<const float4*>(kvs + (tx + 16 * j) * Sh::ST + d);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float x = sc[i][j];
                    x = fmaf(qv[i].x, kv[j].x, x);
                    x = fmaf(qv[i].y, kv[j].y, x);
                    x = fmaf(qv[i].z, kv[j].z, x);
                    sc[i][j] = fmaf(qv[i].w, kv[j].w, x);
                }
        }

#pragma unroll
        for (int i = 0; i < 4; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int key = kt + tx + 16 * j;
                sc[i][j] = key >= row_first[ty * 4 + i] && key <= row_pos[ty * 4 + i] ? cap_score(sc[i][j], a.softcap) : -INFINITY;
                mx = fmaxf(mx, sc[i][j]);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            float m_use;
            const float corr = softmax_step(m[i], mx, m_use);
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float p = exp2f(sc[i][j] - m_use);
                sum += p;
                ps[(ty * 4 + i) * kPst + tx + 16 * j] = p;
            }
            l[i] = fmaf(l[i], corr, sum);
#pragma unroll
            for (int e = 0; e < Sh::NJ * 4; e++) o[i][e] *= corr;
        }
        __syncthreads();  // weights written, K no longer read
        stage_tile<KV, HDP>(kvs, vpool, slots, kv_row, head_off, hd, vec_ok, tid);
        __syncthreads();

        for (int c0 = 0; c0 < kTile; c0 += 4) {
            float4 p4[4];  // weights of keys c0..c0+3 for each of the thread's rows
#pragma unroll
            for (int i = 0; i < 4; i++) p4[i] = *reinterpret_cast<const float4*>(ps + (ty * 4 + i) * kPst + c0);
#pragma unroll
            for (int cc = 0; cc < 4; cc++) {
#pragma unroll
                for (int jj = 0; jj < Sh::NJ; jj++) {
                    const float4 v = *reinterpret_cast<const float4*>(kvs + (c0 + cc) * Sh::ST + jj * 64 + tx * 4);
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const float p = cc == 0 ? p4[i].x : cc == 1 ? p4[i].y : cc == 2 ? p4[i].z : p4[i].w;
                        o[i][jj * 4 + 0] = fmaf(p, v.x, o[i][jj * 4 + 0]);
                        o[i][jj * 4 + 1] = fmaf(p, v.y, o[i][jj * 4 + 1]);
                        o[i][jj * 4 + 2] = fmaf(p, v.z, o[i][jj * 4 + 2]);
                        o[i][jj * 4 + 3] = fmaf(p, v.w, o[i][jj * 4 + 3]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        float sum = l[i];
#pragma unroll
        for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        const int r = ty * 4 + i;
        if (r >= n_rows) continue;
        const float inv = 1.0f / sum;
        const int rg = r0 + r, tok = t0 + rg / group, h = kvh * group + rg % group;
        float* out = a.out + (int64_t(tok) * a.n_heads + h) * hd;
#pragma unroll
        for (int jj = 0; jj < Sh::NJ; jj++)
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int col = jj * 64 + tx * 4 + u;
                if (col < hd) out[col] = o[i][jj * 4 + u] * inv;
            }
    }
}

template <typename KV, int HDP>
void launch_hdp(const PagedAttentionArgs& a, bool vec_ok, cudaStream_t stream) {
    using Sh = PrefillShape<KV, HDP>;
    const int64_t slots = prefill_tile_slots<kTile>(a);
    const dim3 grid(unsigned(slots), unsigned(a.n_kv_heads));
    const auto kernel = prefill_tile_kernel<KV, HDP>;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Sh::smem));
    kernel<<<grid, kThreads, Sh::smem, stream>>>(a, vec_ok);
}

template <typename KV>
void launch_kv(const PagedAttentionArgs& a, bool vec_ok, cudaStream_t stream) {
    switch (padded_head_dim(a.head_dim)) {
        case 64: launch_hdp<KV, 64>(a, vec_ok, stream); break;
        case 128: launch_hdp<KV, 128>(a, vec_ok, stream); break;
        default: launch_hdp<KV, 256>(a, vec_ok, stream); break;
    }
}

}  // namespace

void launch_prefill_tiles(const PagedAttentionArgs& a, bool kv_vec_ok, cudaStream_t stream) {
    static const bool force_simt = [] {
        const char* e = std::getenv("OSPREY_CUDA_ATTN_PREFILL");
        return e != nullptr && std::strcmp(e, "simt") == 0;
    }();
    if (!force_simt && launch_prefill_mma(a, kv_vec_ok, stream)) return;
    if (a.kv_f16) launch_kv<__half>(a, kv_vec_ok, stream);
    else launch_kv<float>(a, kv_vec_ok, stream);
}

}  // namespace osprey::backend::cuda::attn
