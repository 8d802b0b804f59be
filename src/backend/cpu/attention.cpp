// Paged causal GQA attention on the CPU: one work item per (query token, K/V head) — its q heads share each K/V row
// read — or per (query token, q head) when there are few tokens; each item reads its sequence's keys through the
// block table, so its result depends only on its own query and context.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/thread_pool.h"

namespace osprey::backend::cpu {

namespace {

// max over x[0, n) (exact in any order): 8 independent running maxima, so the compiler vectorizes the loop instead
// of one compare chain per score.
float row_max(const float* x, int n) {
    float m8[8];
    for (float& m : m8) m = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int i = 0; i < 8; i++) m8[i] = m8[i] > x[j + i] ? m8[i] : x[j + i];
    float mx = -INFINITY;
    for (float m : m8) mx = std::max(mx, m);
    for (; j < n; j++) mx = std::max(mx, x[j]);
    return mx;
}

}  // namespace

void paged_attention_driver(ThreadPool& pool, const CpuKernels& k, float* out, const float* q, const KvLayerView& kv,
                            const AttentionBatch& batch, const AttentionParams& p) {
    const int T = batch.n_tokens;
    const int H = p.n_heads, hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
    const int bs = kv.block_size;
    const int64_t kv_row = int64_t(p.n_kv_heads) * hd;  // elements per slot
    const int32_t* qstart = batch.query_start.as<int32_t>();
    const int32_t* positions = batch.positions.as<int32_t>();
    const int32_t* tables = batch.block_tables.as<int32_t>();
    const bool f16 = kv.k.dtype == DType::F16;

    // token -> sequence, and each sequence's slot offsets (in elements, head 0), computed once per call.
    std::vector<int> seq_of(size_t(T), 0);
    std::vector<int64_t> seq_off(size_t(batch.n_seqs) + 1, 0);
    const int32_t* seq_lens = batch.seq_lens.as<int32_t>();
    for (int s = 0; s < batch.n_seqs; s++) {
        for (int t = qstart[s]; t < qstart[s + 1]; t++) seq_of[size_t(t)] = s;
        seq_off[size_t(s) + 1] = seq_off[size_t(s)] + seq_lens[s];
    }
    std::vector<int64_t> offs(size_t(seq_off.back()));
    for (int s = 0; s < batch.n_seqs; s++) {
        const int32_t* table = tables + int64_t(s) * batch.max_blocks_per_seq;
        int64_t* o = offs.data() + seq_off[size_t(s)];
        for (int j0 = 0; j0 < seq_lens[s]; j0 += bs) {
            const int64_t base = int64_t(table[j0 / bs]) * bs * kv_row;
            for (int j = j0; j < std::min(seq_lens[s], j0 + bs); j++) o[j] = base + int64_t(j - j0) * kv_row;
        }
    }

    const int max_ctx = std::max(1, batch.max_seq_len);
    const size_t elem = f16 ? 2 : 4;
    // Work items: (token, K/V head), whose q heads read each K/V row once through the grouped kernels, when there
    // are enough of them to keep the threads busy; else (token, q head). Both give the same bits per head.
    const bool grouped = k.attn_scores_group && k.attn_values_group && group > 1 && group <= 64 &&
                         int64_t(T) * p.n_kv_heads >= 4 * int64_t(pool.n_threads());
    const int heads_per_item = grouped ? group : 1;
    const int64_t stride = max_ctx + 8;
    // Items are handed out one at a time: their cost grows with the context, so a static split of a prefill chunk
    // (early tokens cheap, late ones dear) would leave one thread idle.
    const int64_t n_items = int64_t(T) * (H / heads_per_item);
    std::atomic<int64_t> next{0};
    pool.run([&](int, int) {
        std::vector<float> scores(size_t(stride * heads_per_item));
        for (int64_t item; (item = next.fetch_add(1, std::memory_order_relaxed)) < n_items;) {
            const int t = int(item / (H / heads_per_item)), h0 = int(item % (H / heads_per_item)) * heads_per_item;
            const int s = seq_of[size_t(t)];
            const int pos = positions[t];
            const int lo = p.window > 0 ? std::max(0, pos - p.window + 1) : 0;
            const int n = pos - lo + 1;
            const int kvh = h0 / group;
            const float* qv = q + (int64_t(t) * H + h0) * hd;
            const int64_t* o_ctx = offs.data() + seq_off[size_t(s)] + lo;
            const void* kb = static_cast<const char*>(kv.k.data) + size_t(kvh) * hd * elem;
            const void* vb = static_cast<const char*>(kv.v.data) + size_t(kvh) * hd * elem;
            float* out_h = out + (int64_t(t) * H + h0) * hd;
            if (grouped) k.attn_scores_group(qv, heads_per_item, kb, f16, o_ctx, n, hd, p.scale, scores.data(), stride);
            else k.attn_scores(qv, kb, f16, o_ctx, n, hd, p.scale, scores.data());
            float sums[64];
            float* all = scores.data();
            for (int g = 0; g < heads_per_item; g++) {
                float* sc = all + g * stride;
                if (p.softcap > 0)
                    for (int j = 0; j < n; j++) sc[j] = p.softcap * std::tanh(sc[j] / p.softcap);
                sums[g] = k.exp_sub_sum(sc, n, row_max(sc, n));
            }
            if (grouped) k.attn_values_group(out_h, heads_per_item, all, stride, vb, f16, o_ctx, n, hd);
            else k.attn_values(out_h, all, vb, f16, o_ctx, n, hd);
            for (int g = 0; g < heads_per_item; g++) {
                const float inv = 1.0f / sums[g];
                for (int i = 0; i < hd; i++) out_h[g * hd + i] *= inv;
            }
        }
    });
}

}  // namespace osprey::backend::cpu
