// Flash attention on tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulation) for sequences with two or more
// query tokens, f16 pools with 16-byte aligned rows. Same rows, grid and tile slots as the SIMT kernel
// (attention_prefill.cu): a block serves 64 rows (query token i, query head g of the KV head) = row i * group + g
// of one sequence and KV head; 4 warps of 16 rows each.
// Per block: Q (times scale, and log2(e) when there is no cap) as f16 head and tail in shared memory; key tiles of
// KC keys at key indices aligned to multiples of KC (64; at head_dim 256 16, so that two blocks still fit an SM
// beside the q tails, or 32 with OSPREY_CUDA_ATTN_PREFILL=f16), K and V rows copied from the paged pool through
// the block table by cp.async into two buffers (the next tile loads while this one is computed).
// Per warp and key tile: S = Q K^T (ldmatrix fragments), mask (first visible key <= j <= position) and cap in f32,
// online softmax in f32 registers (each thread holds 2 rows; a row's 4 lanes agree on its max), P as f16 head and
// tail reused in registers as the A operands of O += P V (V fragments by ldmatrix.trans). The row sum adds head +
// tail of each weight, so the output is the weighted mean of V under exactly the weights the products used.
// Batch invariance as in the SIMT kernel: a tile a row cannot see leaves its state exactly unchanged (a warp
// none of whose rows sees the tile skips it, which is the same), mma rows are independent, and tile edges are
// fixed key indices, so a row's result depends only on its query, position and keys.
// Accuracy: k and v are f16 already; q (times scale) and the weights p are each split into an f16 head and an f16
// tail (x = hi + lo to ~2^-22 relative, or 2^-25 absolute where the tail is subnormal) and every product is two
// mma's with f32 accumulation, so the result has f32-class error, as the decode kernel (attention_decode_mma.cu),
// for twice the tensor-core work. OSPREY_CUDA_ATTN_PREFILL=f16 keeps one f16 rounding of q and p instead
// (relative 2^-11; for comparisons).
#include <climits>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/mma_ptx.cuh"

namespace osprey::backend::cuda::attn {

namespace {

constexpr int kRows = 64, kWarps = 4, kThreadsMma = kWarps * 32;

// kSplit: q and p as f16 head + tail (two mma's per product); else one f16 rounding each.
template <int HDP, bool kSplit>
struct MmaShape {
    static constexpr int KC = HDP == 256 ? (kSplit ? 16 : 32) : 64;  // keys per tile (2 blocks per SM)
    static constexpr int ST = HDP + 8;                // f16 row stride: rows 16 bytes apart mod 128 (ldmatrix)
    static constexpr int NCH = HDP / 8;               // 16-byte chunks per row
    static constexpr int NT = KC / 8;                 // S n-tiles per warp
    static constexpr int OT = HDP / 8;                // O n-tiles per warp
    static constexpr int KS = HDP / 16;               // k-steps of Q K^T
    static constexpr bool kQRegs = HDP <= 128;        // Q head fragments kept in registers
    static constexpr bool kQtRegs = kSplit && HDP <= 64;  // Q tail fragments too (at 128 they would spill)
    static constexpr bool kTailAcc = kSplit && NT < 8; // q tails' S in their own accumulators (more mma chains)
    static constexpr int QP = kSplit ? 2 : 1;          // q parts in shared memory: head (and tail)
    static constexpr size_t smem = size_t(QP * kRows + 4 * KC) * ST * sizeof(__half);
    // Two blocks per SM: 228 KB of shared memory, 1 KB of it reserved per block, and the row windows.
    static_assert(smem + 2 * kRows * sizeof(int) + 1024 <= 228 * 1024 / 2, "2 blocks per SM");
};

__device__ __forceinline__ uint32_t half2_bits(__half2 h) { return *reinterpret_cast<const uint32_t*>(&h); }

// (x0, x1) as f16 pairs: head = x rounded to f16 and, if kSplit, tail = (x - head) rounded to f16; sum adds
// head + tail, the weights the products use.
template <bool kSplit>
__device__ __forceinline__ void split_half2(float x0, float x1, uint32_t& head, uint32_t& tail, float& sum) {
    const __half2 h = __floats2half2_rn(x0, x1);
    const float2 f = __half22float2(h);
    head = half2_bits(h);
    if constexpr (kSplit) {
        const __half2 t = __floats2half2_rn(x0 - f.x, x1 - f.y);
        const float2 ft = __half22float2(t);
        tail = half2_bits(t);
        sum += (f.x + ft.x) + (f.y + ft.y);
    } else {
        tail = 0u;
        sum += f.x + f.y;
    }
}

template <int HDP, bool kSplit>
__global__ void __launch_bounds__(kThreadsMma, 2) prefill_mma_kernel(PagedAttentionArgs a) {
    using Sh = MmaShape<HDP, kSplit>;
    constexpr int KC = Sh::KC, ST = Sh::ST;
    const int group = a.n_heads / a.n_kv_heads, kvh = int(blockIdx.y);
    PrefillTile pt;
    if (!prefill_tile_of<kRows>(a, blockIdx.x, group, pt)) return;
    const int s = pt.s, t0 = pt.t0, r0 = pt.r0, n_rows = pt.n_rows;
    const int hd = a.head_dim, tid = int(threadIdx.x), warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* qs = reinterpret_cast<__half*>(smem_raw);  // [kRows][ST]: q heads
    __half* ql = qs + kRows * ST;                      // [kRows][ST]: q tails (kSplit)
    __half* ks = qs + Sh::QP * kRows * ST;             // [2][KC][ST]
    __half* vs = ks + 2 * KC * ST;                     // [2][KC][ST]
    __shared__ int row_pos[kRows], row_first[kRows];

    load_row_windows<kRows>(row_pos, row_first, tid, a, pt, group);
    const float qmul = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
    constexpr int Q4 = HDP / 4;
    for (int idx = tid; idx < kRows * Q4; idx += kThreadsMma) {
        const int r = idx / Q4, d = (idx % Q4) * 4;
        float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < n_rows && d < hd) {
            const int rg = r0 + r, tok = t0 + rg / group, h = kvh * group + rg % group;
            x = *reinterpret_cast<const float4*>(a.q + (int64_t(tok) * a.n_heads + h) * hd + d);
        }
        uint2 u, t;
        float unused = 0.0f;
        split_half2<kSplit>(x.x * qmul, x.y * qmul, u.x, t.x, unused);
        split_half2<kSplit>(x.z * qmul, x.w * qmul, u.y, t.y, unused);
        *reinterpret_cast<uint2*>(qs + r * ST + d) = u;
        if constexpr (kSplit) *reinterpret_cast<uint2*>(ql + r * ST + d) = t;
    }
    __syncthreads();

    int k_min = INT_MAX, k_max = -1, w_min = INT_MAX, w_max = -1;
    for (int r = 0; r < n_rows; r++) {
        k_min = min(k_min, row_first[r]), k_max = max(k_max, row_pos[r]);
        if (r >> 4 == warp) w_min = min(w_min, row_first[r]), w_max = max(w_max, row_pos[r]);
    }
    // The thread's two rows: warp * 16 + g and + 8.
    const int rA = warp * 16 + g, rB = rA + 8;
    const int firstA = row_first[rA], posA = row_pos[rA], firstB = row_first[rB], posB = row_pos[rB];
    const int first_hi = max(firstA, firstB), pos_lo = min(posA, posB);

    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd, head_off = int64_t(kvh) * hd;
    const __half* kpool = static_cast<const __half*>(a.k_pool);
    const __half* vpool = static_cast<const __half*>(a.v_pool);

    // K and V rows of keys kt .. kt + KC - 1 into buffer buf (zeros for keys outside [k_min, k_max] and
    // columns beyond hd).
    auto load_tile = [&](int buf, int kt) {
        __half* kd = ks + buf * KC * ST;
        __half* vd = vs + buf * KC * ST;
#pragma unroll
        for (int i = 0; i < KC * Sh::NCH / kThreadsMma; i++) {
            const int idx = tid + i * kThreadsMma, r = idx / Sh::NCH, c = idx % Sh::NCH;
            const int j = kt + r;
            const bool valid = j >= k_min && j <= k_max && c * 8 < hd;
            int64_t off = 0;
            if (valid) off = (int64_t(table[j / bs]) * bs + j % bs) * kv_row + head_off + c * 8;
            cp_async16(kd + r * ST + c * 8, kpool + off, valid);
            cp_async16(vd + r * ST + c * 8, vpool + off, valid);
        }
    };

    // The warp's q fragments, heads (qf) and tails (qt), at k-step k.
    const int q_off = (warp * 16 + (lane & 15)) * ST + (lane >> 4) * 8;
    uint32_t qf[Sh::kQRegs ? Sh::KS : 1][4], qt[Sh::kQtRegs ? Sh::KS : 1][4];
#pragma unroll
    for (int k = 0; k < Sh::KS; k++) {
        if constexpr (Sh::kQRegs) ldmatrix_x4(qf[k], qs + q_off + k * 16);
        if constexpr (Sh::kQtRegs) ldmatrix_x4(qt[k], ql + q_off + k * 16);
    }

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[Sh::OT][4];
#pragma unroll
    for (int n = 0; n < Sh::OT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    const int kt0 = k_min / KC * KC, n_kt = (k_max - kt0) / KC + 1;
    load_tile(0, kt0);
    cp_async_commit();
    for (int it = 0; it < n_kt; it++) {
        const int kt = kt0 + it * KC, buf = it & 1;
        if (it + 1 < n_kt) {
            load_tile(buf ^ 1, kt + KC);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (kt <= w_max && kt + KC - 1 >= w_min) {
            const __half* kb = ks + buf * KC * ST;
            const __half* vb = vs + buf * KC * ST;
            // S = Q K^T: heads, then tails into the same accumulators, or into sl where there are few n-tiles.
            float sc[Sh::NT][4];
            [[maybe_unused]] float sl[Sh::kTailAcc ? Sh::NT : 1][4];
#pragma unroll
            for (int n = 0; n < Sh::NT; n++) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
            if constexpr (Sh::kTailAcc) {
#pragma unroll
                for (int n = 0; n < Sh::NT; n++) sl[n][0] = sl[n][1] = sl[n][2] = sl[n][3] = 0.0f;
            }
#pragma unroll
            for (int k = 0; k < Sh::KS; k++) {
                uint32_t af[4];
                [[maybe_unused]] uint32_t al[4];
                if constexpr (Sh::kQRegs) {
#pragma unroll
                    for (int u = 0; u < 4; u++) af[u] = qf[k][u];
                } else {
                    ldmatrix_x4(af, qs + q_off + k * 16);
                }
                if constexpr (Sh::kQtRegs) {
#pragma unroll
                    for (int u = 0; u < 4; u++) al[u] = qt[k][u];
                } else if constexpr (kSplit) {
                    ldmatrix_x4(al, ql + q_off + k * 16);
                }
#pragma unroll
                for (int n2 = 0; n2 < Sh::NT / 2; n2++) {
                    uint32_t bf[4];
                    ldmatrix_x4(bf, kb + (n2 * 16 + (lane >> 4) * 8 + (lane & 7)) * ST + k * 16 + ((lane >> 3) & 1) * 8);
                    mma16816(sc[2 * n2], af, bf[0], bf[1]);
                    mma16816(sc[2 * n2 + 1], af, bf[2], bf[3]);
                    if constexpr (Sh::kTailAcc) {
                        mma16816(sl[2 * n2], al, bf[0], bf[1]);
                        mma16816(sl[2 * n2 + 1], al, bf[2], bf[3]);
                    } else if constexpr (kSplit) {
                        mma16816(sc[2 * n2], al, bf[0], bf[1]);
                        mma16816(sc[2 * n2 + 1], al, bf[2], bf[3]);
                    }
                }
            }
            if constexpr (Sh::kTailAcc) {
#pragma unroll
                for (int n = 0; n < Sh::NT; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) sc[n][e] += sl[n][e];
            }
            // Mask and cap; element e of n-tile n is row (e < 2 ? rA : rB), key kt + 8n + 2tq + (e & 1).
            const bool full = kt >= first_hi && kt + KC - 1 <= pos_lo;
            if (!full || a.softcap > 0.0f) {
#pragma unroll
                for (int n = 0; n < Sh::NT; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = kt + 8 * n + 2 * tq + (e & 1);
                        const bool vis = e < 2 ? key >= firstA && key <= posA : key >= firstB && key <= posB;
                        sc[n][e] = vis ? cap_score(sc[n][e], a.softcap) : -INFINITY;
                    }
            }
            float corr[2], m_use[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < Sh::NT; n++) mx = fmaxf(mx, fmaxf(sc[n][2 * h], sc[n][2 * h + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                corr[h] = softmax_step(m[h], mx, m_use[h]);
            }
            uint32_t pf[Sh::NT][2], pl[Sh::NT][2];  // weights: heads, tails (zero unless kSplit)
            float sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int n = 0; n < Sh::NT; n++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    split_half2<kSplit>(exp2f(sc[n][2 * h] - m_use[h]), exp2f(sc[n][2 * h + 1] - m_use[h]), pf[n][h],
                                        pl[n][h], sum[h]);
#pragma unroll
            for (int h = 0; h < 2; h++) l[h] = fmaf(l[h], corr[h], sum[h]);
#pragma unroll
            for (int n = 0; n < Sh::OT; n++) {
                o[n][0] *= corr[0], o[n][1] *= corr[0];
                o[n][2] *= corr[1], o[n][3] *= corr[1];
            }
#pragma unroll
            for (int kk = 0; kk < KC / 16; kk++) {
                const uint32_t af[4] = {pf[2 * kk][0], pf[2 * kk][1], pf[2 * kk + 1][0], pf[2 * kk + 1][1]};
                const uint32_t at[4] = {pl[2 * kk][0], pl[2 * kk][1], pl[2 * kk + 1][0], pl[2 * kk + 1][1]};
#pragma unroll
                for (int n2 = 0; n2 < Sh::OT / 2; n2++) {
                    uint32_t bf[4];
                    ldmatrix_x4_trans(bf, vb + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * ST + n2 * 16 + (lane >> 4) * 8);
                    mma16816(o[2 * n2], af, bf[0], bf[1]);
                    mma16816(o[2 * n2 + 1], af, bf[2], bf[3]);
                    if constexpr (kSplit) {
                        mma16816(o[2 * n2], at, bf[0], bf[1]);
                        mma16816(o[2 * n2 + 1], at, bf[2], bf[3]);
                    }
                }
            }
        }
        __syncthreads();  // this buffer is refilled by the next iteration's load
    }

#pragma unroll
    for (int h = 0; h < 2; h++) {
        float sum = l[h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int r = h == 0 ? rA : rB;
        if (r >= n_rows) continue;
        const float inv = 1.0f / sum;
        const int rg = r0 + r, tok = t0 + rg / group, head = kvh * group + rg % group;
        float* out = a.out + (int64_t(tok) * a.n_heads + head) * hd;
#pragma unroll
        for (int n = 0; n < Sh::OT; n++) {
            const int col = n * 8 + 2 * tq;
            if (col < hd) *reinterpret_cast<float2*>(out + col) = make_float2(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
        }
    }
}

template <int HDP, bool kSplit>
void launch_mma_hdp(const PagedAttentionArgs& a, cudaStream_t stream) {
    using Sh = MmaShape<HDP, kSplit>;
    const int64_t slots = prefill_tile_slots<kRows>(a);
    const dim3 grid(unsigned(slots), unsigned(a.n_kv_heads));
    const auto kernel = prefill_mma_kernel<HDP, kSplit>;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Sh::smem));
    kernel<<<grid, kThreadsMma, Sh::smem, stream>>>(a);
}

}  // namespace

bool launch_prefill_mma(const PagedAttentionArgs& a, bool kv_vec_ok, cudaStream_t stream) {
    // f16 pools with 16-byte rows (head_dim a multiple of 8); f32 queries read as float4, outputs written as float2.
    if (!a.kv_f16 || !kv_vec_ok || a.head_dim % 8 != 0 || a.head_dim > kAttentionMaxHeadDim) return false;
    if (reinterpret_cast<uintptr_t>(a.q) % 16 != 0 || reinterpret_cast<uintptr_t>(a.out) % 8 != 0) return false;
    // OSPREY_CUDA_ATTN_PREFILL=f16: one f16 rounding of q and p (=simt is read in attention_prefill.cu).
    static const bool single_f16 = [] {
        const char* e = std::getenv("OSPREY_CUDA_ATTN_PREFILL");
        return e != nullptr && std::strcmp(e, "f16") == 0;
    }();
    switch (padded_head_dim(a.head_dim)) {
        case 64: single_f16 ? launch_mma_hdp<64, false>(a, stream) : launch_mma_hdp<64, true>(a, stream); break;
        case 128: single_f16 ? launch_mma_hdp<128, false>(a, stream) : launch_mma_hdp<128, true>(a, stream); break;
        default: single_f16 ? launch_mma_hdp<256, false>(a, stream) : launch_mma_hdp<256, true>(a, stream); break;
    }
    return true;
}

}  // namespace osprey::backend::cuda::attn
