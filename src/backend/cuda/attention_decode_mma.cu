// Split-K ("flash-decoding") attention on tensor cores for sequences with one query token, f16 pools with 16-byte
// aligned rows. The keys a token sees are cut into splits by the decode split rule (attention_common.cuh; a
// function of the visible-key count only). A block serves one (sequence, KV head, row block) over G consecutive
// splits (G, splits_per_block, is chosen by the host from the batch's size: many splits per block for large
// batches, one for a single long sequence). Within each split the work and its arithmetic are fixed, whatever G
// is: the block's 4 warps take 16-key chunks of the split in turn (warp w: chunks w, w + 4, ...; chunks at key
// indices aligned to 16, keys outside the split masked), each keeps an online softmax over its chunks, and at the
// end the warps' states are merged in warp order (in shared memory, after a block barrier) into the split's partial
// (max, sum, weighted V) in the scratch area. When the block holds all of its sequence's splits it then merges
// them in split order itself (decode_split_weights / decode_merge_column, the merge kernel's own arithmetic) and
// writes the normalized output, so no merge kernel runs for it; otherwise the merge kernel (attention.cu) does.
// So a token's result is bit-identical for every G, i.e. whatever batch it is in.
// Rows: a row block holds up to 8 query heads of the KV head, and the m16 of mma.sync m16n8k16 holds their f16
// heads (rows 0-7) and tails (rows 8-15) of q times scale, so one mma computes both products of a head (a thread
// holds rows g and g + 8: the head and tail of head g, summed in f32 after); likewise the softmax weights p of
// head g are the A rows g (f16 head) and g + 8 (f16 tail) of P V, whose two accumulator rows are summed after.
// Each warp streams its chunks' K and V rows (across split boundaries) from the paged pool through the block
// table into its own NS-stage shared-memory ring with cp.async (NS - 1 chunks in flight while one is computed).
// Accuracy: x = hi + lo to ~2^-22 relative (2^-25 absolute where the tail is subnormal), f32 accumulation: the
// result matches the f32 SIMT kernel to ~1e-7 relative (the test holds it to 1e-10 normalized error against a
// double reference). The row sums add the f32 weights.
#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/mma_ptx.cuh"

#include <algorithm>

namespace osprey::backend::cuda::attn {

namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kHeads = 8, kKeys = 16;

template <int HDP>
struct DecodeMmaShape {
    static constexpr int NS = HDP == 256 ? 2 : 3;  // ring stages per warp
    static constexpr int ST = HDP + 8;             // f16 row stride: rows 16 bytes apart mod 128 (ldmatrix)
    static constexpr int SO = HDP + 4;             // f32 row stride of the warp states
    static constexpr int NCH = HDP / 8;            // 16-byte pieces per row
    static constexpr int CPL = kKeys * NCH / 32;   // pieces per lane per chunk, of K and of V each
    static constexpr int KS = HDP / 16;            // k-steps of Q K^T
    static constexpr int OT = HDP / 8;             // O n-tiles
    static constexpr bool kQRegs = HDP <= 128;     // Q fragments kept in registers
    static constexpr int stage = 2 * kKeys * ST;   // halves per stage: K rows then V rows
    static constexpr size_t q_bytes = size_t(2 * kHeads) * ST * sizeof(__half);  // heads, then tails of q
    static constexpr size_t kv_bytes = size_t(kWarps) * NS * stage * sizeof(__half);
    static constexpr size_t cap = HDP == 256 ? 227 * 1024 : 113 * 1024;  // 1 block per SM at 256, else 2
    // The warps' states of one split (weighted V, then (max, sum)) for sr rows each.
    static constexpr size_t w_bytes(int sr) { return size_t(kWarps) * sr * (SO + 2) * sizeof(float); }
    // The area before the rings: q, and the warp states when a block holds several splits (the q fragments are in
    // registers by the time a split ends; otherwise the states follow the rings). One split per block: the states
    // reuse the drained rings.
    static constexpr size_t head_bytes(int sr, int gs) {
        return gs > 1 && kQRegs ? (q_bytes > w_bytes(sr) ? q_bytes : (w_bytes(sr) + 15) / 16 * 16) : q_bytes;
    }
    static constexpr size_t smem(int sr, int gs) {
        return head_bytes(sr, gs) + kv_bytes + (gs > 1 && !kQRegs ? w_bytes(sr) : 0);
    }
    static_assert(q_bytes % 16 == 0 && kv_bytes % 16 == 0, "16-byte aligned areas");
    static_assert(kv_bytes >= w_bytes(kHeads), "one split's states fit the rings");
    static_assert(smem(kHeads, 1) <= cap, "one split per block always fits");
    static_assert(kv_bytes >= size_t(kHeads) * (kDecodeMaxSplits + 1) * sizeof(float), "merge weights fit the rings");
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
__global__ void __launch_bounds__(kThreads, 2) decode_mma_kernel(PagedAttentionArgs a, DecodePartials part) {
    pdl_release();  // the next product may start its weight loads
    using Sh = DecodeMmaShape<HDP>;
    constexpr int ST = Sh::ST, NS = Sh::NS, SO = Sh::SO;
    const int s = blockIdx.x;
    const int t = a.query_start[s];
    const int group = a.n_heads / a.n_kv_heads, n_rb = (group + kHeads - 1) / kHeads, sr = min(kHeads, group);
    const int kvh = int(blockIdx.y) / n_rb, rb = int(blockIdx.y) % n_rb;
    const int h0 = kvh * group + rb * kHeads, n_rows = min(kHeads, group - rb * kHeads);
    const int hd = a.head_dim, tid = int(threadIdx.x), warp = tid >> 5, lane = tid & 31;
    // The block's q rows (16-byte loads, all in flight at once; rows past the group stay zero) are fetched while
    // the position and block table are read: they depend on the token index only.
    constexpr int Q4 = HDP / 4, NQ = kHeads * Q4 / kThreads;
    float4 qv[NQ];
#pragma unroll
    for (int i = 0; i < NQ; i++) {
        const int idx = tid + i * kThreads, r = idx / Q4, d = (idx % Q4) * 4;
        qv[i] = r < n_rows && d < hd ? *reinterpret_cast<const float4*>(a.q + (int64_t(t) * a.n_heads + h0 + r) * hd + d)
                                     : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    if (a.query_start[s + 1] - t != 1) return;
    const int pos = a.positions[t], first = first_visible(pos, a.window);
    const int n_vis = pos - first + 1, split_len = part.rule.split_size(n_vis);
    const int n_split = (n_vis + split_len - 1) / split_len, gs = part.splits_per_block;
    const int z0 = int(blockIdx.z) * gs;  // the block's first split
    if (z0 >= n_split) return;
    const int nl = min(gs, n_split - z0);  // splits held by the block
    const bool whole = nl == n_split;      // all of them: the block merges them itself (see block_merged_splits)
    const int g = lane >> 2, tq = lane & 3;

    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half* q_s = reinterpret_cast<__half*>(smem_raw);  // [2 * kHeads][ST]: heads, then tails
    __half* rings = reinterpret_cast<__half*>(smem_raw + Sh::head_bytes(sr, gs));  // [kWarps][NS][K, V][kKeys][ST]
    __half* ring = rings + warp * NS * Sh::stage;
    float* st_o = reinterpret_cast<float*>(gs == 1 ? reinterpret_cast<unsigned char*>(rings)
                                           : Sh::kQRegs ? smem_raw
                                                        : smem_raw + Sh::head_bytes(sr, gs) + Sh::kv_bytes);
    float* st_ml = st_o + kWarps * sr * SO;  // st_o [kWarps][sr][SO], st_ml [kWarps][sr][2]

    const int bs = a.block_size;
    const int32_t* table = a.block_tables + int64_t(s) * a.max_blocks_per_seq;
    const int64_t kv_row = int64_t(a.n_kv_heads) * hd, head_off = int64_t(kvh) * hd;
    const __half* kpool = static_cast<const __half*>(a.k_pool);
    const __half* vpool = static_cast<const __half*>(a.v_pool);
    const int lk = lane & (kKeys - 1);

    // Split li of the block: keys [kb, ke); its chunks of kKeys keys start at cb + kKeys * c, and this warp takes
    // c = warp + kWarps * it for it < n_it.
    auto split_keys = [&](int li, int& kb, int& ke) {
        kb = first + (z0 + li) * split_len;
        ke = min(pos + 1, kb + split_len);
    };
    auto warp_chunks = [&](int kb, int ke) {
        const int cb = kb / kKeys * kKeys, n_ch = (ke - 1 - cb) / kKeys + 1;
        return n_ch > warp ? (n_ch - warp + kWarps - 1) / kWarps : 0;
    };
    // The next chunk to load, (split, it); li == nl past the warp's last.
    int ld_li = 0, ld_it = 0, ld_kb, ld_ke, ld_n;
    split_keys(0, ld_kb, ld_ke);
    ld_n = warp_chunks(ld_kb, ld_ke);
    auto advance = [&]() {
        ld_it++;
        while (ld_li < nl && ld_it >= ld_n) {
            ld_li++, ld_it = 0;
            if (ld_li < nl) split_keys(ld_li, ld_kb, ld_ke), ld_n = warp_chunks(ld_kb, ld_ke);
        }
    };
    if (ld_n == 0) ld_it = -1, advance();
    // Pool slot of key lk of the next chunk to load; -1 for keys outside its split and past the warp's last chunk.
    auto slot_next_chunk = [&]() {
        if (ld_li >= nl) return -1;
        const int j = ld_kb / kKeys * kKeys + (warp + ld_it * kWarps) * kKeys + lk;
        return j >= ld_kb && j < ld_ke ? table[j / bs] * bs + j % bs : -1;
    };
    // K and V rows of a chunk into ring stage st (zeros for masked keys, columns past hd).
    auto issue = [&](int st, int slot) {
        __half* kd = ring + st * Sh::stage;
        __half* vd = kd + kKeys * ST;
#pragma unroll
        for (int i = 0; i < Sh::CPL; i++) {
            const int idx = lane + 32 * i, r = idx / Sh::NCH, c = idx % Sh::NCH;
            const int sl = __shfl_sync(0xffffffffu, slot, r);
            const bool valid = sl >= 0 && c * 8 < hd;
            const int64_t off = valid ? int64_t(sl) * kv_row + head_off + c * 8 : 0;
            cp_async16(kd + r * ST + c * 8, kpool + off, valid);
            cp_async16(vd + r * ST + c * 8, vpool + off, valid);
        }
    };

    // The first NS - 1 chunks start loading before anything else; a group is committed per chunk, empty or not.
#pragma unroll
    for (int st = 0; st < NS - 1; st++) {
        if (ld_li < nl) issue(st, slot_next_chunk()), advance();
        cp_async_commit();
    }
    int slot_next = slot_next_chunk();

    // q of the block's heads times scale (and log2(e) when there is no cap): f16 heads in rows 0-7, tails in 8-15.
    const float qmul = a.softcap > 0.0f ? a.scale : a.scale * kLog2e;
#pragma unroll
    for (int i = 0; i < NQ; i++) {
        const int idx = tid + i * kThreads, r = idx / Q4, d = (idx % Q4) * 4;
        uint2 uh, ul;
        split_half2(qv[i].x * qmul, qv[i].y * qmul, uh.x, ul.x);
        split_half2(qv[i].z * qmul, qv[i].w * qmul, uh.y, ul.y);
        *reinterpret_cast<uint2*>(q_s + r * ST + d) = uh;
        *reinterpret_cast<uint2*>(q_s + (r + kHeads) * ST + d) = ul;
    }
    __syncthreads();

    uint32_t qf[Sh::kQRegs ? Sh::KS : 1][4];
    if constexpr (Sh::kQRegs) {
#pragma unroll
        for (int k = 0; k < Sh::KS; k++) ldmatrix_x4(qf[k], q_s + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
    }

    int c = 0;  // chunks computed by the warp so far (its ring position)
    for (int li = 0; li < nl; li++) {
        int kb, ke;
        split_keys(li, kb, ke);
        const int n_it = warp_chunks(kb, ke), cb = kb / kKeys * kKeys;
        // The thread's head is g; accumulator elements 0, 1 are its f16-head part, 2, 3 its f16-tail part.
        float m = -INFINITY, l = 0.0f;
        float o[Sh::OT][4];
#pragma unroll
        for (int n = 0; n < Sh::OT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

        for (int it = 0; it < n_it; it++, c++) {
            if (ld_li < nl) issue((c + NS - 1) % NS, slot_next), advance();
            cp_async_commit();
            slot_next = slot_next_chunk();
            cp_async_wait<NS - 1>();  // chunk c has landed (this thread's copies) ...
            __syncwarp();             // ... and every lane's
            const __half* kbuf = ring + (c % NS) * Sh::stage;
            const __half* vbuf = kbuf + kKeys * ST;

            // S = Q K^T over even and odd k-steps in separate accumulators (shorter mma chains), summed after.
            float sa[2][2][4];
#pragma unroll
            for (int p = 0; p < 2; p++)
#pragma unroll
                for (int n = 0; n < 2; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) sa[p][n][e] = 0.0f;
#pragma unroll
            for (int k = 0; k < Sh::KS; k++) {
                uint32_t aq[4];
                if constexpr (Sh::kQRegs) {
#pragma unroll
                    for (int u = 0; u < 4; u++) aq[u] = qf[k][u];
                } else {
                    ldmatrix_x4(aq, q_s + (lane & 15) * ST + k * 16 + (lane >> 4) * 8);
                }
                uint32_t bf[4];
                ldmatrix_x4(bf, kbuf + ((lane >> 4) * 8 + (lane & 7)) * ST + k * 16 + ((lane >> 3) & 1) * 8);
                mma16816(sa[k & 1][0], aq, bf[0], bf[1]);
                mma16816(sa[k & 1][1], aq, bf[2], bf[3]);
            }
            // Score of key kc + 8n + 2tq + j for head g: head part (row g) plus tail part (row g + 8); mask, cap.
            const int kc = cb + (warp + it * kWarps) * kKeys;
            float sc[2][2];
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    const int key = kc + 8 * n + 2 * tq + j;
                    const float x = (sa[0][n][j] + sa[1][n][j]) + (sa[0][n][2 + j] + sa[1][n][2 + j]);
                    sc[n][j] = key >= kb && key < ke ? cap_score(x, a.softcap) : -INFINITY;
                }
            float mx = fmaxf(fmaxf(sc[0][0], sc[0][1]), fmaxf(sc[1][0], sc[1][1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float m_use;
            const float corr = softmax_step(m, mx, m_use);
            uint32_t pa[4];  // A of P V: rows g = f16 heads of the weights, rows g + 8 their tails
            float sum = 0.0f;
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float p0 = exp2f(sc[n][0] - m_use), p1 = exp2f(sc[n][1] - m_use);
                sum += p0 + p1;
                split_half2(p0, p1, pa[2 * n], pa[2 * n + 1]);
            }
            l = fmaf(l, corr, sum);
#pragma unroll
            for (int n = 0; n < Sh::OT; n++) o[n][0] *= corr, o[n][1] *= corr, o[n][2] *= corr, o[n][3] *= corr;
#pragma unroll
            for (int n2 = 0; n2 < Sh::OT / 2; n2++) {
                uint32_t bf[4];
                ldmatrix_x4_trans(bf, vbuf + (((lane >> 3) & 1) * 8 + (lane & 7)) * ST + n2 * 16 + (lane >> 4) * 8);
                mma16816(o[2 * n2], pa, bf[0], bf[1]);
                mma16816(o[2 * n2 + 1], pa, bf[2], bf[3]);
            }
            __syncwarp();  // every lane is done with this stage before the next issue refills it
        }

        // The warps' states of split li: (max, sum) and weighted V (head part + tail part) of each row < sr, into
        // the state area once the block is done with it (and, when it reuses the rings, every copy has landed).
        float lw = l;
        lw += __shfl_xor_sync(0xffffffffu, lw, 1);
        lw += __shfl_xor_sync(0xffffffffu, lw, 2);
        if (li == nl - 1) cp_async_wait<0>();
        __syncthreads();
        if (g < sr) {
            const int row = warp * sr + g;
            if (tq == 0) st_ml[row * 2] = m, st_ml[row * 2 + 1] = lw;
#pragma unroll
            for (int n = 0; n < Sh::OT; n++)
                *reinterpret_cast<float2*>(st_o + row * SO + n * 8 + 2 * tq) =
                    make_float2(o[n][0] + o[n][2], o[n][1] + o[n][3]);
        }
        __syncthreads();
        // Merged in warp order into the split's partial.
        merge_warp_states<kWarps>(st_ml, st_o, sr, SO, n_rows, hd, tid, kThreads, a, part, s, h0, z0 + li);
    }
    if (!whole) return;
    // The block held every split of its sequence: merge them in split order with the merge kernel's arithmetic
    // (decode_split_weights once per row into the drained rings, then decode_merge_column's fma chain) from the
    // partials it just wrote, each thread's kCols columns at once so that their loads are all in flight together.
    __syncthreads();
    constexpr int kW = kDecodeMaxSplits + 1;  // per row: the split weights, then 1 / their weighted sum
    float* w_s = reinterpret_cast<float*>(rings);
    if (tid < n_rows) {
        const int64_t pb = (int64_t(s) * a.n_heads + h0 + tid) * part.n_split_max;
        float w[kDecodeMaxSplits];
        w_s[tid * kW + kDecodeMaxSplits] = decode_split_weights(n_split, part.ml + pb * 2, 2, w);
#pragma unroll
        for (int i = 0; i < kDecodeMaxSplits; i++) w_s[tid * kW + i] = w[i];
    }
    __syncthreads();
    constexpr int kCols = 4;
    const int n_out = n_rows * hd;
    for (int idx0 = tid; idx0 < n_out; idx0 += kCols * kThreads) {
        float acc[kCols] = {};
#pragma unroll
        for (int i = 0; i < kDecodeMaxSplits; i++) {
            if (i >= n_split) break;
#pragma unroll
            for (int k = 0; k < kCols; k++) {
                const int idx = idx0 + k * kThreads, r = idx / hd, e = idx % hd;
                const int64_t pb = (int64_t(s) * a.n_heads + h0 + r) * part.n_split_max;
                if (idx < n_out) acc[k] = fmaf(part.o[(pb + i) * hd + e], w_s[r * kW + i], acc[k]);
            }
        }
#pragma unroll
        for (int k = 0; k < kCols; k++) {
            const int idx = idx0 + k * kThreads, r = idx / hd, e = idx % hd;
            if (idx < n_out) a.out[(int64_t(t) * a.n_heads + h0 + r) * hd + e] = acc[k] * w_s[r * kW + kDecodeMaxSplits];
        }
    }
}

template <int HDP>
void launch_mma_hdp(const PagedAttentionArgs& a, DecodePartials& part, cudaStream_t stream) {
    using Sh = DecodeMmaShape<HDP>;
    const int group = a.n_heads / a.n_kv_heads, n_rb = (group + kHeads - 1) / kHeads, sr = std::min(kHeads, group);
    // Splits per block: all of a sequence's when the grid still has 4 blocks per SM, else the largest power of two
    // that keeps that many; G changes the grid and the merge launch, never a result.
    static const int n_sm = [] {
        int dev = 0, n = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        return n > 0 ? n : 1;
    }();
    // Several splits per block need a state area beside the rings (too big for groups of 8 at head_dim 128).
    const int g_max = Sh::smem(sr, 2) <= Sh::cap ? std::min(part.n_split_max, kDecodeMaxSplits) : 1;
    int gs = part.splits_per_block;
    if (gs <= 0) {
        const int64_t pairs = int64_t(a.n_seqs) * a.n_kv_heads * n_rb, want = 4 * int64_t(n_sm);
        gs = 1;
        while (gs < g_max && pairs * ((part.n_split_max + 2 * gs - 1) / (2 * gs)) >= want) gs *= 2;
        if (gs < g_max && pairs >= want) gs = g_max;  // one block per sequence still fills the GPU
    }
    gs = std::min(gs, g_max);
    part.splits_per_block = gs;
    // A sequence of at most gs splits is whole in its block.
    part.block_merged_splits = gs;
    const unsigned n_z = unsigned((part.n_split_max + gs - 1) / gs);
    const dim3 grid(unsigned(a.n_seqs), unsigned(a.n_kv_heads * n_rb), n_z);
    const auto kernel = decode_mma_kernel<HDP>;
    const size_t smem = Sh::smem(sr, gs);
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Sh::cap));
    kernel<<<grid, kThreads, smem, stream>>>(a, part);
}

}  // namespace

bool launch_decode_mma(const PagedAttentionArgs& a, DecodePartials& part, bool kv_vec_ok, cudaStream_t stream) {
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
