// Split-K ("flash-decoding") attention on tensor cores for sequences with one query token, f16 pools with 16-byte
// aligned rows. Same grid contract as the SIMT kernel (attention_decode.cu): a block per (sequence, KV head, row
// block, split) writes each of its rows' (max, sum, weighted V) partial for the merge kernel (attention.cu), but a
// row block holds up to 16 query heads of the KV head (the m16 of mma.sync m16n8k16; rows past the group are
// zero), so a KV row is read once for the whole GQA group.
// A block's 4 warps take 16-key chunks of its split in turn (warp w: chunks w, w + 4, ...; chunks at key indices
// aligned to 16, keys outside the split masked). Each warp streams its chunks' K and V rows from the paged pool
// through the block table into its own 3-stage shared-memory ring with cp.async (two chunks in flight while one
// is computed; no block-wide barrier until the end), and per chunk: S = Q K^T (ldmatrix fragments), mask and cap
// in f32, an online softmax in f32 registers (each thread holds 2 rows; a row's 4 lanes agree on its max), then
// O += P V (V fragments by ldmatrix.trans). The warps' states are merged in warp order, as in the SIMT kernel.
// Accuracy: the products take f16 inputs, so q (times scale) and the weights p are each split into an f16 head
// and an f16 tail (x = hi + lo to ~2^-22 relative, or 2^-25 absolute where the tail is subnormal) and every
// product is two mma's with f32 accumulation: the result matches the f32 SIMT kernel to ~1e-7 relative (the
// test holds it to the same 1e-10 normalized error against a double reference). The row sums add the f32 weights.
// Batch invariance: a block's work depends only on its sequence's position, window and keys, and the split rule
// only on the number of visible keys.
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/mma_ptx.cuh"

namespace osprey::backend::cuda::attn {

namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kRowsMma = 16, kKeys = 16;

template <int HDP>
struct DecodeMmaShape {
    static constexpr int NS = HDP == 256 ? 2 : 3;  // ring stages per warp (2 blocks per SM at 128, 3 at 64)
    static constexpr int ST = HDP + 8;             // f16 row stride: rows 16 bytes apart mod 128 (ldmatrix)
    static constexpr int NCH = HDP / 8;            // 16-byte pieces per row
    static constexpr int CPL = kKeys * NCH / 32;   // pieces per lane per chunk, of K and of V each
    static constexpr int KS = HDP / 16;            // k-steps of Q K^T
    static constexpr int OT = HDP / 8;             // O n-tiles
    static constexpr bool kQRegs = HDP <= 128;     // Q fragments kept in registers
    static constexpr int stage = 2 * kKeys * ST;   // halves per stage: K rows then V rows
    static constexpr size_t q_bytes = size_t(2) * kRowsMma * ST * sizeof(__half);  // head and tail of q
    static constexpr size_t kv_bytes = size_t(kWarps) * NS * stage * sizeof(__half);
    static constexpr size_t smem = q_bytes + kv_bytes;
    static_assert(kv_bytes >= size_t(kWarps) * kRowsMma * (HDP + 2) * 4, "the merge reuses the rings");
    static_assert(q_bytes % 16 == 0, "rings 16-byte aligned");
};


__device__ __forceinline__ uint32_t half2_bits(__half2 h) { return *reinterpret_cast<const uint32_t*>(&h); }

// (x0, x1) as an f16 pair head + tail: head = x rounded to f16, tail = (x - head) rounded to f16.
__device__ __forceinline__ void split_half2(float x0, float x1, uint32_t& head, uint32_t& tail) {
    const __half2 h = __floats2half2_rn(x0, x1);
    const float2 f = __half22float2(h);
    head = half2_bits(h);
    tail = half2_bits(__floats2half2_rn(x0 - f.x, x1 - f.y));
}

template <int HDP>
__global__ void __launch_bounds__(kThreads) decode_mma_kernel(PagedAttentionArgs a, DecodePartials part) {
    using Sh = DecodeMmaShape<HDP>;
    constexpr int ST = Sh::ST, NS = Sh::NS;
    const int s = blockIdx.x;
    const int t = a.query_start[s];
    const int group = a.n_heads / a.n_kv_heads, n_rb = (group + kRowsMma - 1) / kRowsMma;
    const int kvh = int(blockIdx.y) / n_rb, rb = int(blockIdx.y) % n_rb;
    const int h0 = kvh * group + rb * kRowsMma, n_rows = min(kRowsMma, group - rb * kRowsMma);
    const int hd = a.head_dim, tid = int(threadIdx.x), warp = tid >> 5, lane = tid & 31;
    // The block's q rows (16-byte loads, all in flight at once; rows past the group stay zero) are fetched while
    // the position and block table are read: they depend on the token index only.
    constexpr int Q4 = HDP / 4, NQ = kRowsMma * Q4 / kThreads;
    float4 qv[NQ];
#pragma unroll
    for (int i = 0; i < NQ; i++) {
        const int idx = tid + i * kThreads, r = idx / Q4, d = (idx % Q4) * 4;
        qv[i] = r < n_rows && d < hd ? *reinterpret_cast<const float4*>(a.q + (int64_t(t) * a.n_heads + h0 + r) * hd + d)
                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (a.query_start[s + 1] - t != 1) return;
    const int pos = a.positions[t], first = first_visible(pos, a.window);
    const int n_vis = pos - first + 1, split_len = part.rule.split_size(n_vis), split = int(blockIdx.z);
    if (split * split_len >= n_vis) return;
    const int k_beg = first + split * split_len, k_end = min(pos + 1, k_beg + split_len);
    const int g = lane >> 2, tq = lane & 3;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* q_hi = reinterpret_cast<__half*>(smem_raw);  // [kRowsMma][ST]
    __half* q_lo = q_hi + kRowsMma * ST;                 // [kRowsMma][ST]
    __half* rings = q_lo + kRowsMma * ST;                // [kWarps][NS][K, V][kKeys][ST]
    __half* ring = rings + warp * NS * Sh::stage;

    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd, head_off = int64_t(kvh) * hd;
    const __half* kpool = static_cast<const __half*>(a.k_pool);
    const __half* vpool = static_cast<const __half*>(a.v_pool);

    // Chunks of kKeys keys at key indices cbase + kKeys * c; this warp takes c = warp + kWarps * it.
    const int cbase = k_beg / kKeys * kKeys;
    const int n_ch = (k_end - 1 - cbase) / kKeys + 1;
    const int n_it = n_ch > warp ? (n_ch - warp + kWarps - 1) / kWarps : 0;
    const int lk = lane & (kKeys - 1);
    // Pool slot of key lk of the warp's chunk it; -1 for keys outside the split and chunks past the warp's last.
    auto slot_of = [&](int it) {
        const int j = cbase + (warp + it * kWarps) * kKeys + lk;
        return it < n_it && j >= k_beg && j < k_end ? table[j / bs] * bs + j % bs : -1;
    };
    // K and V rows of the warp's chunk it into its ring stage it % NS (zeros for masked keys, columns past hd).
    auto issue = [&](int it, int slot) {
        __half* kd = ring + (it % NS) * Sh::stage;
        __half* vd = kd + kKeys * ST;
#pragma unroll
        for (int i = 0; i < Sh::CPL; i++) {
            const int idx = lane + 32 * i, r = idx / Sh::NCH, c = idx % Sh::NCH;
            const int sr = __shfl_sync(0xffffffffu, slot, r);
            const bool valid = sr >= 0 && c * 8 < hd;
            const int64_t off = valid ? int64_t(sr) * kv_row + head_off + c * 8 : 0;
            cp_async16(kd + r * ST + c * 8, kpool + off, valid);
            cp_async16(vd + r * ST + c * 8, vpool + off, valid);
        }
    };

    // The first NS - 1 chunks start loading before anything else; a group is committed per chunk, empty or not.
#pragma unroll
    for (int st = 0; st < NS - 1; st++) {
        if (st < n_it) issue(st, slot_of(st));
        cp_async_commit();
    }
    int slot_next = slot_of(NS - 1);

    // q of the block's rows times scale (and log2(e) when there is no cap), as f16 head and tail.
    const float qmul = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
#pragma unroll
    for (int i = 0; i < NQ; i++) {
        const int idx = tid + i * kThreads, r = idx / Q4, d = (idx % Q4) * 4;
        uint2 uh, ul;
        split_half2(qv[i].x * qmul, qv[i].y * qmul, uh.x, ul.x);
        split_half2(qv[i].z * qmul, qv[i].w * qmul, uh.y, ul.y);
        *reinterpret_cast<uint2*>(q_hi + r * ST + d) = uh;
        *reinterpret_cast<uint2*>(q_lo + r * ST + d) = ul;
    }
    __syncthreads();

    uint32_t qfh[Sh::kQRegs ? Sh::KS : 1][4], qfl[Sh::kQRegs ? Sh::KS : 1][4];
    if constexpr (Sh::kQRegs) {
#pragma unroll
        for (int k = 0; k < Sh::KS; k++) {
            ldmatrix_x4(qfh[k], q_hi + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
            ldmatrix_x4(qfl[k], q_lo + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
        }
    }

    // The thread's rows: g (elements 0, 1 of a fragment) and g + 8 (elements 2, 3).
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[Sh::OT][4];
#pragma unroll
    for (int n = 0; n < Sh::OT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int it = 0; it < n_it; it++) {
        if (it + NS - 1 < n_it) issue(it + NS - 1, slot_next);
        cp_async_commit();
        slot_next = slot_of(it + NS);
        cp_async_wait<NS - 1>();  // chunk it has landed (this thread's copies) ...
        __syncwarp();             // ... and every lane's
        const __half* kb = ring + (it % NS) * Sh::stage;
        const __half* vb = kb + kKeys * ST;

        // S = Q K^T, head and tail of q in separate accumulators (shorter mma chains), summed after.
        float sh[2][4], sl[2][4];
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) sh[n][e] = sl[n][e] = 0.0f;
#pragma unroll
        for (int k = 0; k < Sh::KS; k++) {
            uint32_t ah[4], al[4];
            if constexpr (Sh::kQRegs) {
#pragma unroll
                for (int u = 0; u < 4; u++) ah[u] = qfh[k][u], al[u] = qfl[k][u];
            } else {
                ldmatrix_x4(ah, q_hi + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
                ldmatrix_x4(al, q_lo + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
            }
            uint32_t bf[4];
            ldmatrix_x4(bf, kb + ((lane >> 4) * 8 + (lane & 7)) * ST + k * 16 + ((lane >> 3) & 1) * 8);
            mma16816(sh[0], ah, bf[0], bf[1]);
            mma16816(sh[1], ah, bf[2], bf[3]);
            mma16816(sl[0], al, bf[0], bf[1]);
            mma16816(sl[1], al, bf[2], bf[3]);
        }
        // Mask and cap; element e of n-tile n is key kc + 8n + 2tq + (e & 1).
        const int kc = cbase + (warp + it * kWarps) * kKeys;
        float sc[2][4];
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kc + 8 * n + 2 * tq + (e & 1);
                sc[n][e] = key >= k_beg && key < k_end ? cap_score(sh[n][e] + sl[n][e], a.softcap) : -INFINITY;
            }
        float corr[2], m_use[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float mx = fmaxf(fmaxf(sc[0][2 * h], sc[0][2 * h + 1]), fmaxf(sc[1][2 * h], sc[1][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            corr[h] = softmax_step(m[h], mx, m_use[h]);
        }
        uint32_t ph[2][2], pl[2][2];
        float sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int n = 0; n < 2; n++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const float p0 = exp2f(sc[n][2 * h] - m_use[h]), p1 = exp2f(sc[n][2 * h + 1] - m_use[h]);
                sum[h] += p0 + p1;
                split_half2(p0, p1, ph[n][h], pl[n][h]);
            }
#pragma unroll
        for (int h = 0; h < 2; h++) l[h] = fmaf(l[h], corr[h], sum[h]);
#pragma unroll
        for (int n = 0; n < Sh::OT; n++) {
            o[n][0] *= corr[0], o[n][1] *= corr[0];
            o[n][2] *= corr[1], o[n][3] *= corr[1];
        }
        const uint32_t ah[4] = {ph[0][0], ph[0][1], ph[1][0], ph[1][1]};
        const uint32_t al[4] = {pl[0][0], pl[0][1], pl[1][0], pl[1][1]};
#pragma unroll
        for (int n2 = 0; n2 < Sh::OT / 2; n2++) {
            uint32_t bf[4];
            ldmatrix_x4_trans(bf, vb + (((lane >> 3) & 1) * 8 + (lane & 7)) * ST + n2 * 16 + (lane >> 4) * 8);
            mma16816(o[2 * n2], ah, bf[0], bf[1]);
            mma16816(o[2 * n2 + 1], ah, bf[2], bf[3]);
            mma16816(o[2 * n2], al, bf[0], bf[1]);
            mma16816(o[2 * n2 + 1], al, bf[2], bf[3]);
        }
        __syncwarp();  // every lane is done with this stage before the next issue refills it
    }

    // Merge the warps in warp order: weighted V and (max, sum) of each warp's rows into the (now free) rings.
    cp_async_wait<0>();
    __syncthreads();
    float* wo = reinterpret_cast<float*>(rings);  // [kWarps][kRowsMma][HDP]
    float* wml = wo + kWarps * kRowsMma * HDP;    // [kWarps][kRowsMma][2]
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float lw = l[h];
        lw += __shfl_xor_sync(0xffffffffu, lw, 1);
        lw += __shfl_xor_sync(0xffffffffu, lw, 2);
        const int r = g + 8 * h;
        if (tq == 0) wml[(warp * kRowsMma + r) * 2] = m[h], wml[(warp * kRowsMma + r) * 2 + 1] = lw;
#pragma unroll
        for (int n = 0; n < Sh::OT; n++)
            *reinterpret_cast<float2*>(wo + (warp * kRowsMma + r) * HDP + n * 8 + 2 * tq) =
                make_float2(o[n][2 * h], o[n][2 * h + 1]);
    }
    __syncthreads();
    merge_warp_states<kWarps, kRowsMma, HDP>(wml, wo, n_rows, hd, tid, kThreads, a, part, s, h0, split);
}

template <int HDP>
void launch_mma_hdp(const PagedAttentionArgs& a, const DecodePartials& part, cudaStream_t stream) {
    using Sh = DecodeMmaShape<HDP>;
    const int group = a.n_heads / a.n_kv_heads;
    const dim3 grid(unsigned(a.n_seqs), unsigned(a.n_kv_heads * ((group + kRowsMma - 1) / kRowsMma)),
                    unsigned(part.n_split_max));
    const auto kernel = decode_mma_kernel<HDP>;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Sh::smem));
    kernel<<<grid, kThreads, Sh::smem, stream>>>(a, part);
}

}  // namespace

bool launch_decode_mma(const PagedAttentionArgs& a, const DecodePartials& part, bool kv_vec_ok, cudaStream_t stream) {
    // f16 pools with 16-byte rows (head_dim a multiple of 8), 16-byte aligned queries.
    if (!a.kv_f16 || !kv_vec_ok || a.head_dim % 8 != 0 || a.head_dim > kAttentionMaxHeadDim) return false;
    if (reinterpret_cast<uintptr_t>(a.q) % 16 != 0) return false;  // q rows read as float4
    switch (padded_head_dim(a.head_dim)) {
        case 64: launch_mma_hdp<64>(a, part, stream); break;
        case 128: launch_mma_hdp<128>(a, part, stream); break;
        default: launch_mma_hdp<256>(a, part, stream); break;
    }
    return true;
}

}  // namespace osprey::backend::cuda::attn
