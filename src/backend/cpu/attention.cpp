// Paged causal GQA attention on the CPU: one work item per (query token, q head); each item reads its
// sequence's keys through the block table, so its result depends only on its own query and context.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/thread_pool.h"

namespace osprey::backend::cpu {

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

    // token -> sequence
    std::vector<int> seq_of(size_t(T), 0);
    for (int s = 0; s < batch.n_seqs; s++)
        for (int t = qstart[s]; t < qstart[s + 1]; t++) seq_of[size_t(t)] = s;

    const int max_ctx = std::max(1, batch.max_seq_len);
    const void* kbase = kv.k.data;
    const void* vbase = kv.v.data;
    pool.run([&](int tid, int n_threads) {
        std::vector<float> scores(size_t(max_ctx) + 1);
        std::vector<int64_t> offs(size_t(max_ctx) + 1);
        const int64_t n_items = int64_t(T) * H;
        const int64_t i0 = n_items * tid / n_threads, i1 = n_items * (tid + 1) / n_threads;
        for (int64_t item = i0; item < i1; item++) {
            const int t = int(item / H), h = int(item % H);
            const int s = seq_of[size_t(t)];
            const int pos = positions[t];
            const int lo = p.window > 0 ? std::max(0, pos - p.window + 1) : 0;
            const int n = pos - lo + 1;
            const int kvh = h / group;
            const float* qv = q + (int64_t(t) * H + h) * hd;
            const int32_t* table = tables + int64_t(s) * batch.max_blocks_per_seq;
            for (int j = lo; j <= pos; j++) {
                const int64_t slot = int64_t(table[j / bs]) * bs + j % bs;
                offs[size_t(j - lo)] = slot * kv_row + int64_t(kvh) * hd;
            }
            float* sc = scores.data();
            k.attn_scores(qv, kbase, f16, offs.data(), n, hd, p.scale, sc);
            if (p.softcap > 0)
                for (int j = 0; j < n; j++) sc[j] = p.softcap * std::tanh(sc[j] / p.softcap);
            float mx = -INFINITY;
            for (int j = 0; j < n; j++) mx = std::max(mx, sc[j]);
            float sum = 0;
            for (int j = 0; j < n; j++) {
                const float e = std::exp(sc[j] - mx);
                sc[j] = e;
                sum += e;
            }
            float* o = out + (int64_t(t) * H + h) * hd;
            k.attn_values(o, sc, vbase, f16, offs.data(), n, hd);
            const float inv = 1.0f / sum;
            for (int i = 0; i < hd; i++) o[i] *= inv;
        }
    });
}

}  // namespace osprey::backend::cpu
