// Split-K ("flash-decoding") attention for sequences with one query token, on CUDA cores: the path for f32 pools
// and unaligned f16 rows (f16 pools otherwise run attention_decode_mma.cu), and for OSPREY_CUDA_ATTN_DECODE=simt.
// Grid (n_seqs, n_kv_heads * row_blocks, n_split_max), 128 threads. A block serves up to kRows query heads of one
// KV head (row_blocks = ceil(group / kRows)) over one split of the token's visible keys. Its 4 warps take
// 32-key chunks in turn (warp w: chunks w, w + 4, ...): a chunk's K rows are staged in the warp's shared memory
// with 16-byte loads (pool type kept), lane c scores key c against every row, the warp's online softmax
// (running max uniform over the warp, per-lane partial sums) is updated, then the chunk's V rows replace K and
// each lane accumulates its columns of weighted V. The 4 warps' states are merged in warp order and written as
// the split's partial.
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda::attn {

namespace {

constexpr int kWarps = 4, kRows = 8, kChunk = 32;

template <typename KV, int HDP>
struct DecodeShape {
    static constexpr int VE = 16 / int(sizeof(KV));  // elements per 16-byte vector
    static constexpr int KST = HDP + VE;            // staged row stride (one vector of padding: no bank conflicts)
    static constexpr int NV = HDP / VE;             // vectors per staged row
    static constexpr int CW = HDP >= 128 ? 4 : 2;   // V columns per lane and step
    static constexpr int NI = HDP / (32 * CW);      // steps covering the padded row
    static constexpr size_t q_bytes = size_t(kRows) * HDP * 4;
    static constexpr size_t p_bytes = size_t(kWarps) * kRows * kChunk * 4;
    static constexpr size_t kv_bytes = size_t(kWarps) * kChunk * KST * sizeof(KV);
    static constexpr size_t slot_bytes = size_t(kWarps) * kChunk * 4;
    static constexpr size_t smem = q_bytes + p_bytes + kv_bytes + slot_bytes;
    static_assert(kv_bytes >= size_t(kWarps) * kRows * HDP * 4, "the merge reuses the staging area");
};

// Stage rows [0, n_rows) of one warp's chunk (pool slots in slot[]) into dst [kChunk][KST], zero elsewhere.
template <typename KV, int HDP>
__device__ __forceinline__ void stage_chunk(KV* dst, const KV* pool, const int* slot, int n_rows, int64_t kv_row,
                                            int64_t head_off, int hd, bool vec_ok, int lane) {
    using Sh = DecodeShape<KV, HDP>;
    if (vec_ok) {
#pragma unroll
        for (int k0 = 0; k0 < Sh::NV; k0 += 8) {
            uint4 buf[8];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int idx = lane + 32 * (k0 + k), r = idx / Sh::NV, v = idx % Sh::NV;
                buf[k] = make_uint4(0u, 0u, 0u, 0u);
                if (r < n_rows && v * Sh::VE < hd)
                    buf[k] = __ldg(reinterpret_cast<const uint4*>(pool + int64_t(slot[r]) * kv_row + head_off +
                                                                   v * Sh::VE));
            }
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int idx = lane + 32 * (k0 + k), r = idx / Sh::NV, v = idx % Sh::NV;
                *reinterpret_cast<uint4*>(dst + r * Sh::KST + v * Sh::VE) = buf[k];
            }
        }
    } else {
        for (int idx = lane; idx < kChunk * HDP; idx += 32) {
            const int r = idx / HDP, d = idx % HDP;
            dst[r * Sh::KST + d] = r < n_rows && d < hd ? pool[int64_t(slot[r]) * kv_row + head_off + d] : kv_zero<KV>();
        }
    }
}

template <typename KV, int HDP>
__global__ void __launch_bounds__(kWarps * 32) decode_split_kernel(PagedAttentionArgs a, DecodePartials part,
                                                                    bool vec_ok) {
    pdl_release();  // the next product may start its weight loads
    using Sh = DecodeShape<KV, HDP>;
    const int s = blockIdx.x;
    const int t = a.query_start[s];
    if (a.query_start[s + 1] - t != 1) return;
    const int group = a.n_heads / a.n_kv_heads, n_rb = (group + kRows - 1) / kRows;
    const int kvh = int(blockIdx.y) / n_rb, rb = int(blockIdx.y) % n_rb;
    const int h0 = kvh * group + rb * kRows, n_rows = min(kRows, group - rb * kRows);
    const int pos = a.positions[t], first = first_visible(pos, a.window);
    const int n_vis = pos - first + 1, split_len = part.rule.split_size(n_vis), split = int(blockIdx.z);
    if (split * split_len >= n_vis) return;
    const int k_beg = first + split * split_len, k_end = min(pos + 1, k_beg + split_len);
    const int hd = a.head_dim, warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;

    extern __shared__ __align__(16) unsigned char smem[];
    float* qs = reinterpret_cast<float*>(smem);                                   // [kRows][HDP]
    float* ps = reinterpret_cast<float*>(smem + Sh::q_bytes);                     // [kWarps][kRows][kChunk]
    KV* kvs = reinterpret_cast<KV*>(smem + Sh::q_bytes + Sh::p_bytes);            // [kWarps][kChunk][KST]
    int* slots = reinterpret_cast<int*>(smem + Sh::q_bytes + Sh::p_bytes + Sh::kv_bytes);  // [kWarps][kChunk]

    const float qmul = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
    for (int i = int(threadIdx.x); i < kRows * HDP; i += kWarps * 32) {
        const int r = i / HDP, d = i % HDP;
        qs[i] = r < n_rows && d < hd ? a.q[(int64_t(t) * a.n_heads + h0 + r) * hd + d] * qmul : 0.0f;
    }
    __syncthreads();

    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd, head_off = int64_t(kvh) * hd;
    const KV* kpool = static_cast<const KV*>(a.k_pool);
    const KV* vpool = static_cast<const KV*>(a.v_pool);
    KV* kw = kvs + warp * kChunk * Sh::KST;
    float* pw = ps + warp * kRows * kChunk;
    int* sw = slots + warp * kChunk;

    float m[kRows], l[kRows], acc[kRows][Sh::NI * Sh::CW];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < Sh::NI * Sh::CW; e++) acc[r][e] = 0.0f;
    }

    for (int c0 = k_beg + warp * kChunk; c0 < k_end; c0 += kWarps * kChunk) {
        const int nk = min(kChunk, k_end - c0);
        {
            const int j = c0 + lane;
            sw[lane] = lane < nk ? table[j / bs] * bs + j % bs : 0;
        }
        __syncwarp();
        stage_chunk<KV, HDP>(kw, kpool, sw, nk, kv_row, head_off, hd, vec_ok, lane);
        __syncwarp();

        // Scores of key c0 + lane against every row.
        float sc[kRows];
#pragma unroll
        for (int r = 0; r < kRows; r++) sc[r] = 0.0f;
        const KV* krow = kw + lane * Sh::KST;
#pragma unroll 4
        for (int v = 0; v < Sh::NV; v++) {
            float kf[Sh::VE];
            vec_to_float(*reinterpret_cast<const uint4*>(krow + v * Sh::VE), kf);
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                if (r >= n_rows) break;
#pragma unroll
                for (int u4 = 0; u4 < Sh::VE; u4 += 4) {
                    const float4 q4 = *reinterpret_cast<const float4*>(qs + r * HDP + v * Sh::VE + u4);
                    sc[r] = fmaf(q4.x, kf[u4], sc[r]);
                    sc[r] = fmaf(q4.y, kf[u4 + 1], sc[r]);
                    sc[r] = fmaf(q4.z, kf[u4 + 2], sc[r]);
                    sc[r] = fmaf(q4.w, kf[u4 + 3], sc[r]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < kRows; r++) {
            if (r >= n_rows) break;
            const float x = lane < nk ? cap_score(sc[r], a.softcap) : -INFINITY;
            float m_use;
            const float corr = softmax_step(m[r], warp_max(x), m_use);
            const float p = exp2f(x - m_use);
            l[r] = fmaf(l[r], corr, p);
            pw[r * kChunk + lane] = p;
#pragma unroll
            for (int e = 0; e < Sh::NI * Sh::CW; e++) acc[r][e] *= corr;
        }
        __syncwarp();  // every lane is done with the K rows
        stage_chunk<KV, HDP>(kw, vpool, sw, nk, kv_row, head_off, hd, vec_ok, lane);
        __syncwarp();

        for (int c = 0; c < nk; c++) {
            float vf[Sh::NI][Sh::CW];
#pragma unroll
            for (int i = 0; i < Sh::NI; i++)
                load_cols<Sh::CW>(kw + c * Sh::KST + i * 32 * Sh::CW + lane * Sh::CW, vf[i]);
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                if (r >= n_rows) break;
                const float p = pw[r * kChunk + c];
#pragma unroll
                for (int i = 0; i < Sh::NI; i++)
#pragma unroll
                    for (int u = 0; u < Sh::CW; u++) acc[r][i * Sh::CW + u] = fmaf(p, vf[i][u], acc[r][i * Sh::CW + u]);
            }
        }
        __syncwarp();  // before the next chunk overwrites the staged rows and weights
    }

    // Merge the warps in warp order: weighted V into the (now free) staging area, (max, sum) into ps.
    __syncthreads();
    float* wo = reinterpret_cast<float*>(kvs);  // [kWarps][kRows][HDP]
    float* wml = ps;                            // [kWarps][kRows][2]
#pragma unroll
    for (int r = 0; r < kRows; r++) {
        if (r >= n_rows) break;
        float lw = l[r];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) lw += __shfl_xor_sync(0xffffffffu, lw, o);
        if (lane == 0) wml[(warp * kRows + r) * 2] = m[r], wml[(warp * kRows + r) * 2 + 1] = lw;
#pragma unroll
        for (int i = 0; i < Sh::NI; i++)
#pragma unroll
            for (int u = 0; u < Sh::CW; u++)
                wo[(warp * kRows + r) * HDP + i * 32 * Sh::CW + lane * Sh::CW + u] = acc[r][i * Sh::CW + u];
    }
    __syncthreads();
    merge_warp_states<kWarps>(wml, wo, kRows, HDP, n_rows, hd, int(threadIdx.x), kWarps * 32, a, part, s, h0, split);
}

template <typename KV, int HDP>
void launch_hdp(const PagedAttentionArgs& a, const DecodePartials& part, bool vec_ok, cudaStream_t stream) {
    using Sh = DecodeShape<KV, HDP>;
    const int group = a.n_heads / a.n_kv_heads;
    const dim3 grid(unsigned(a.n_seqs), unsigned(a.n_kv_heads * ((group + kRows - 1) / kRows)),
                    unsigned(part.n_split_max));
    const auto kernel = decode_split_kernel<KV, HDP>;
    if (Sh::smem > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Sh::smem));
    kernel<<<grid, kWarps * 32, Sh::smem, stream>>>(a, part, vec_ok);
}

template <typename KV>
void launch_kv(const PagedAttentionArgs& a, const DecodePartials& part, bool vec_ok, cudaStream_t stream) {
    switch (padded_head_dim(a.head_dim)) {
        case 64: launch_hdp<KV, 64>(a, part, vec_ok, stream); break;
        case 128: launch_hdp<KV, 128>(a, part, vec_ok, stream); break;
        default: launch_hdp<KV, 256>(a, part, vec_ok, stream); break;
    }
}

}  // namespace

void launch_decode_splits(const PagedAttentionArgs& a, const DecodePartials& part, bool kv_vec_ok,
                          cudaStream_t stream) {
    if (a.kv_f16) launch_kv<__half>(a, part, kv_vec_ok, stream);
    else launch_kv<float>(a, part, kv_vec_ok, stream);
}

}  // namespace osprey::backend::cuda::attn
