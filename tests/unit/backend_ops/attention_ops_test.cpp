// Paged attention of the CUDA backend against the CPU backend and against a plain double-precision reference:
// decode (1 token, block-boundary and split-boundary contexts, a 32k context, batches of 24 and 256 sequences),
// prefill and chunked prefill in one ragged batch, sliding-window edges, soft-capping, several head sizes and GQA
// groupings, F32 and F16 pools. Physical blocks are shuffled so every read goes through the block tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/half.h"
#include "unit/backend_ops/backend_ops_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

struct AttnCase {
    std::string name;
    std::vector<int> ctx;         // context length of each sequence (cached + new)
    std::vector<int> new_tokens;  // query tokens of each sequence (the last new_tokens[s] positions)
    int n_heads = 8, n_kv_heads = 2, head_dim = 128;
    int window = 0;
    float softcap = 0.0f;
    DType kv = DType::F32;
    int block_size = 16;
};

// Host-side batch: metadata, pools and queries.
struct HostBatch {
    int n_seqs = 0, n_tokens = 0, max_blocks = 0, max_seq_len = 0, n_blocks = 0;
    std::vector<int32_t> query_start, seq_lens, block_tables, positions, seq_of;
    std::vector<float> q, k, v;           // pools as f32 values (already rounded to f16 for F16 pools)
    std::vector<uint8_t> k_bytes, v_bytes;
};

HostBatch make_batch(const AttnCase& c, uint32_t seed) {
    HostBatch b;
    b.n_seqs = int(c.ctx.size());
    const int bs = c.block_size;
    b.query_start.push_back(0);
    for (int s = 0; s < b.n_seqs; s++) {
        b.query_start.push_back(b.query_start.back() + c.new_tokens[size_t(s)]);
        b.seq_lens.push_back(c.ctx[size_t(s)]);
        b.max_blocks = std::max(b.max_blocks, (c.ctx[size_t(s)] + bs - 1) / bs);
        b.max_seq_len = std::max(b.max_seq_len, c.ctx[size_t(s)]);
        b.n_blocks += (c.ctx[size_t(s)] + bs - 1) / bs;
        for (int i = 0; i < c.new_tokens[size_t(s)]; i++) {
            b.positions.push_back(c.ctx[size_t(s)] - c.new_tokens[size_t(s)] + i);
            b.seq_of.push_back(s);
        }
    }
    b.n_tokens = b.query_start.back();
    b.n_blocks += 3;  // blocks no sequence owns
    std::vector<int32_t> phys(size_t(b.n_blocks));
    std::iota(phys.begin(), phys.end(), 0);
    std::shuffle(phys.begin(), phys.end(), std::mt19937(seed));
    b.block_tables.assign(size_t(b.n_seqs) * size_t(b.max_blocks), -1);
    size_t next = 0;
    for (int s = 0; s < b.n_seqs; s++)
        for (int j = 0; j < (c.ctx[size_t(s)] + bs - 1) / bs; j++)
            b.block_tables[size_t(s * b.max_blocks + j)] = phys[next++];

    const size_t pool_n = size_t(b.n_blocks) * bs * c.n_kv_heads * c.head_dim;
    b.k = random_floats(pool_n, seed + 1, -2, 2);
    b.v = random_floats(pool_n, seed + 2);
    b.q = random_floats(size_t(b.n_tokens) * c.n_heads * c.head_dim, seed + 3, -2, 2);
    auto pack = [&](std::vector<float>& vals, std::vector<uint8_t>& bytes) {
        if (c.kv == DType::F16) {
            bytes.resize(pool_n * 2);
            auto* h = reinterpret_cast<uint16_t*>(bytes.data());
            for (size_t i = 0; i < pool_n; i++) h[i] = fp32_to_fp16(vals[i]), vals[i] = fp16_to_fp32(h[i]);
        } else {
            bytes.resize(pool_n * 4);
            std::memcpy(bytes.data(), vals.data(), bytes.size());
        }
    };
    pack(b.k, b.k_bytes);
    pack(b.v, b.v_bytes);
    return b;
}

// The definition, in double: softmax over visible keys j (first <= j <= pos) of capped q.k * scale, times V.
std::vector<double> attention_ref(const AttnCase& c, const HostBatch& b, float scale) {
    const int H = c.n_heads, hd = c.head_dim, group = c.n_heads / c.n_kv_heads, bs = c.block_size;
    const int64_t kv_row = int64_t(c.n_kv_heads) * hd;
    std::vector<double> out(size_t(b.n_tokens) * H * hd);
    std::vector<double> sc;
    for (int t = 0; t < b.n_tokens; t++) {
        const int s = b.seq_of[size_t(t)], pos = b.positions[size_t(t)];
        const int first = c.window > 0 ? std::max(0, pos - c.window + 1) : 0;
        for (int h = 0; h < H; h++) {
            const float* qv = b.q.data() + (int64_t(t) * H + h) * hd;
            const int kvh = h / group;
            auto slot_off = [&](int j) {
                return (int64_t(b.block_tables[size_t(s * b.max_blocks + j / bs)]) * bs + j % bs) * kv_row +
                       int64_t(kvh) * hd;
            };
            sc.assign(size_t(pos - first + 1), 0.0);
            double mx = -INFINITY;
            for (int j = first; j <= pos; j++) {
                const float* kr = b.k.data() + slot_off(j);
                double d = 0;
                for (int i = 0; i < hd; i++) d += double(qv[i]) * double(kr[i]);
                d *= scale;
                if (c.softcap > 0) d = c.softcap * std::tanh(d / c.softcap);
                sc[size_t(j - first)] = d;
                mx = std::max(mx, d);
            }
            double sum = 0;
            for (double& e : sc) sum += (e = std::exp(e - mx));
            double* o = out.data() + (int64_t(t) * H + h) * hd;
            for (int j = first; j <= pos; j++) {
                const float* vr = b.v.data() + slot_off(j);
                const double w = sc[size_t(j - first)] / sum;
                for (int i = 0; i < hd; i++) o[i] += w * double(vr[i]);
            }
        }
    }
    return out;
}

// A batch's tensors on a backend, ready for paged_attention.
struct DeviceAttention {
    DevTensor qs, sl, bt, ps, q, kp, vp, out;
    AttentionBatch batch;
    AttentionParams p;

    DeviceAttention(Backend& be, const AttnCase& c, const HostBatch& b, float scale)
        : qs(be, DType::I32, {b.n_seqs + 1}, b.query_start.data()),
          sl(be, DType::I32, {b.n_seqs}, b.seq_lens.data()),
          bt(be, DType::I32, {b.n_seqs, b.max_blocks}, b.block_tables.data()),
          ps(be, DType::I32, {b.n_tokens}, b.positions.data()),
          q(be, DType::F32, {b.n_tokens, int64_t(c.n_heads) * c.head_dim}, b.q.data()),
          kp(be, c.kv, {b.n_blocks, c.block_size, c.n_kv_heads, c.head_dim}, b.k_bytes.data()),
          vp(be, c.kv, {b.n_blocks, c.block_size, c.n_kv_heads, c.head_dim}, b.v_bytes.data()),
          out(be, DType::F32, {b.n_tokens, int64_t(c.n_heads) * c.head_dim}),
          block_size_(c.block_size) {
        batch.n_seqs = b.n_seqs;
        batch.n_tokens = b.n_tokens;
        batch.max_blocks_per_seq = b.max_blocks;
        batch.max_seq_len = b.max_seq_len;
        batch.query_start = qs.t;
        batch.seq_lens = sl.t;
        batch.block_tables = bt.t;
        batch.positions = ps.t;
        p.n_heads = c.n_heads, p.n_kv_heads = c.n_kv_heads, p.head_dim = c.head_dim;
        p.scale = scale, p.window = c.window, p.softcap = c.softcap;
    }
    void run(Backend& be) { be.paged_attention(out.t, q.t, KvLayerView{kp.t, vp.t, block_size_}, batch, p); }

  private:
    int block_size_;
};

std::vector<float> run_attention(Backend& be, const AttnCase& c, const HostBatch& b, float scale) {
    DeviceAttention d(be, c, b, scale);
    d.run(be);
    return fetch(d.out, "paged_attention " + c.name);
}

// The CUDA prefill (sequences of 2+ query tokens) runs its products on tensor cores with f16 inputs when the pool
// is f16 and head_dim a multiple of 8: k and v are f16 already, and q (times scale) and the softmax weights p are
// split into f16 head + tail pairs (f32-class error, held to the f32 bound below). With
// OSPREY_CUDA_ATTN_PREFILL=f16 they each take one rounding to f16 instead, a relative error of at most u = 2^-11. A score then moves by ~0.8 u rms here
// (q, k uniform in [-2, 2]) and each weight by ~0.6 u more; the output, a weighted mean of v, has an error
// relative to its size of about that rms: nmse ~ u^2 / 4. tests/golden/attention_f16_error.py models those
// roundings in numpy and measures 0.15-0.3 u^2 on shapes like these; the bound is 4 u^2 (~1e-6), over ten times
// that, while one mask or scale mistake costs far more (one key too many among 100: ~1e-2).
constexpr double kF16Unit = 1.0 / 2048.0;
constexpr double kF16ProductsNmse = 4.0 * kF16Unit * kF16Unit;

bool tensor_core_prefill(const AttnCase& c) {
    return c.kv == DType::F16 && c.head_dim % 8 == 0 &&
           std::any_of(c.new_tokens.begin(), c.new_tokens.end(), [](int n) { return n > 1; });
}

std::vector<AttnCase> attention_cases() {
    std::vector<AttnCase> v;
    auto add = [&](AttnCase c) { v.push_back(std::move(c)); };
    add({.name = "decode 1 token, context 1", .ctx = {1}, .new_tokens = {1}});
    add({.name = "decode at block edges 15,16,17,32,33",
         .ctx = {15, 16, 17, 32, 33}, .new_tokens = {1, 1, 1, 1, 1}, .n_heads = 4, .n_kv_heads = 4,
         .head_dim = 64, .kv = DType::F16});
    add({.name = "decode 32k context", .ctx = {32768}, .new_tokens = {1}, .n_heads = 8, .n_kv_heads = 1,
         .kv = DType::F16});
    add({.name = "decode 32k context, window 4096", .ctx = {32768}, .new_tokens = {1}, .n_heads = 4,
         .n_kv_heads = 2, .window = 4096, .kv = DType::F32});
    {
        AttnCase c{.name = "decode batch 256, contexts 1..700", .n_heads = 8, .n_kv_heads = 2, .kv = DType::F16};
        std::mt19937 rng(5);
        for (int s = 0; s < 256; s++) c.ctx.push_back(1 + int(rng() % 700)), c.new_tokens.push_back(1);
        add(c);
    }
    add({.name = "ragged prefill + chunked prefill + decode", .ctx = {1, 17, 100, 64, 300},
         .new_tokens = {1, 17, 36, 64, 1}, .head_dim = 64});
    add({.name = "prefill 256 tokens, MHA", .ctx = {256}, .new_tokens = {256}, .n_heads = 8, .n_kv_heads = 8,
         .kv = DType::F16});
    add({.name = "window 16 at its edges", .ctx = {40, 16, 17, 33}, .new_tokens = {40, 16, 17, 2},
         .n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .window = 16});
    add({.name = "window 1 (itself only)", .ctx = {20, 5}, .new_tokens = {20, 1}, .n_heads = 2, .n_kv_heads = 1,
         .head_dim = 64, .window = 1});
    add({.name = "softcap 2, head_dim 256 (gemma-like)", .ctx = {50, 300}, .new_tokens = {50, 1}, .n_heads = 4,
         .n_kv_heads = 1, .head_dim = 256, .softcap = 2.0f, .kv = DType::F16});
    add({.name = "head_dim 80, 6 heads over 3", .ctx = {70, 9}, .new_tokens = {5, 9}, .n_heads = 6, .n_kv_heads = 3,
         .head_dim = 80});
    add({.name = "head_dim 32, block size 32", .ctx = {65, 31}, .new_tokens = {65, 31}, .n_heads = 2,
         .n_kv_heads = 2, .head_dim = 32, .block_size = 32});

    // Split-K decode, SIMT rule (OSPREY_CUDA_ATTN_DECODE=simt): the split is 128 keys up to 2048 visible keys, then
    // ceil(n / 16) rounded up to 128 (at most 16 splits); warps take 32-key chunks. Contexts at those edges, for
    // both pool types (run the binary with and without that variable to cover both rules).
    for (DType kv : {DType::F16, DType::F32}) {
        add({.name = "decode at split edges 1,31,32,33,127,128,129,255,256,257", .ctx = {1, 31, 32, 33, 127, 128, 129, 255, 256, 257},
             .new_tokens = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, .n_heads = 8, .n_kv_heads = 2, .kv = kv});
        // 4096 keys take 16 splits but 5000 only 14: the batch's split bound must not come from its longest one.
        add({.name = "decode at split-size edges 2047,2048,2049,2305,4000,4096,4097,5000",
             .ctx = {2047, 2048, 2049, 2305, 4000, 4096, 4097, 5000}, .new_tokens = {1, 1, 1, 1, 1, 1, 1, 1},
             .n_heads = 4, .n_kv_heads = 1, .kv = kv});
    }
    // The default split rule (attention_common.cuh: about 256 keys per split, at most 32, sizes a multiple of 64;
    // tensor-core kernel for f16 pools, SIMT for f32) and the 16-key chunks of the tensor-core kernel: contexts at
    // those edges, for both pool types, with the Llama grouping.
    for (DType kv : {DType::F16, DType::F32}) {
        add({.name = "decode at 256-key split edges",
             .ctx = {15, 16, 17, 63, 64, 65, 191, 192, 193, 255, 256, 257, 511, 512, 513, 577, 640, 769},
             .new_tokens = std::vector<int>(18, 1), .n_heads = 8, .n_kv_heads = 2, .kv = kv});
        // 8192 keys take 32 splits of 256, 8193 only 26 of 320.
        add({.name = "decode at split-count edges 8191,8192,8193,8257,9000", .ctx = {8191, 8192, 8193, 8257, 9000},
             .new_tokens = {1, 1, 1, 1, 1}, .n_heads = 4, .n_kv_heads = 1, .kv = kv});
    }
    {
        AttnCase c{.name = "decode Llama grouping 32/8, 24 contexts 512..640", .n_heads = 32, .n_kv_heads = 8,
                   .kv = DType::F16};
        std::mt19937 rng(21);
        for (int s = 0; s < 24; s++) c.ctx.push_back(512 + int(rng() % 129)), c.new_tokens.push_back(1);
        add(c);
    }
    add({.name = "decode blocks of 32, window 100 (chunks inside pages, unaligned split starts)",
         .ctx = {300, 1000, 37}, .new_tokens = {1, 1, 1}, .n_heads = 8, .n_kv_heads = 2, .window = 100,
         .kv = DType::F16, .block_size = 32});
    add({.name = "decode head_dim 80 f16, group 3", .ctx = {333, 70, 1}, .new_tokens = {1, 1, 1}, .n_heads = 6,
         .n_kv_heads = 2, .head_dim = 80, .kv = DType::F16});
    add({.name = "decode softcap 30, head_dim 64, group 8", .ctx = {2500, 129}, .new_tokens = {1, 1}, .n_heads = 16,
         .n_kv_heads = 2, .head_dim = 64, .softcap = 30.0f, .kv = DType::F16});
    // GQA groups 1, 4, 8, 16 (two row blocks of 8 per KV head in the SIMT kernel, one of 16 on tensor cores) and 32
    // (MQA) at each fast head size.
    for (int hd : {64, 128, 256})
        for (int group : {1, 4, 8})
            add({.name = fmt::format("decode + prefill, group {}", group), .ctx = {700, 130, 90},
                 .new_tokens = {1, 1, 90}, .n_heads = 2 * group, .n_kv_heads = 2, .head_dim = hd,
                 .kv = hd == 128 ? DType::F32 : DType::F16});
    add({.name = "group 16", .ctx = {300, 70}, .new_tokens = {1, 70}, .n_heads = 32, .n_kv_heads = 2, .head_dim = 64,
         .kv = DType::F16});
    add({.name = "MQA group 32", .ctx = {1000, 40}, .new_tokens = {1, 40}, .n_heads = 32, .n_kv_heads = 1,
         .head_dim = 128, .kv = DType::F16});
    // Prefill from 2 to 300 tokens (tiles of 64 rows = tokens x group): tile edges and a tile shared by few rows.
    add({.name = "prefill 2,3,16,17,63,64,65,300 tokens", .ctx = {2, 3, 16, 17, 63, 64, 65, 300},
         .new_tokens = {2, 3, 16, 17, 63, 64, 65, 300}, .n_heads = 4, .n_kv_heads = 1, .kv = DType::F16});
    add({.name = "prefill 129 tokens, head_dim 256, f32", .ctx = {129}, .new_tokens = {129}, .n_heads = 2,
         .n_kv_heads = 1, .head_dim = 256});
    // Chunked prefill: queries at positions 100..163 over 100 cached keys, and a long chunk after 1000 cached.
    add({.name = "chunked prefill 100..163", .ctx = {164}, .new_tokens = {64}, .n_heads = 8, .n_kv_heads = 2,
         .kv = DType::F16});
    add({.name = "chunked prefill 1000..1199 + decodes", .ctx = {1200, 1500, 7}, .new_tokens = {200, 1, 1},
         .n_heads = 8, .n_kv_heads = 2, .head_dim = 64, .kv = DType::F16});
    // Sliding windows whose edges fall inside, on and across the 64-key tiles and the decode splits.
    add({.name = "window 64/65 over prefill tiles", .ctx = {300, 200}, .new_tokens = {300, 136}, .n_heads = 4,
         .n_kv_heads = 2, .head_dim = 64, .window = 64, .kv = DType::F16});
    add({.name = "window 65 over prefill tiles", .ctx = {300}, .new_tokens = {300}, .n_heads = 4, .n_kv_heads = 2,
         .head_dim = 64, .window = 65});
    add({.name = "window 129 decode", .ctx = {128, 129, 130, 1000}, .new_tokens = {1, 1, 1, 1}, .n_heads = 4,
         .n_kv_heads = 2, .window = 129, .kv = DType::F16});
    add({.name = "softcap 30 + window 512, long decode and prefill", .ctx = {3000, 400}, .new_tokens = {1, 200},
         .n_heads = 8, .n_kv_heads = 4, .head_dim = 256, .window = 512, .softcap = 30.0f, .kv = DType::F16});
    // Head sizes off the fast path: 96 and 40 (f16 rows of 80 bytes: element loads), 36 in f32.
    add({.name = "head_dim 96", .ctx = {200, 300}, .new_tokens = {200, 1}, .n_heads = 4, .n_kv_heads = 2,
         .head_dim = 96, .kv = DType::F16});
    add({.name = "head_dim 40 (unaligned rows)", .ctx = {150, 300}, .new_tokens = {150, 1}, .n_heads = 4,
         .n_kv_heads = 2, .head_dim = 40, .kv = DType::F16});
    add({.name = "head_dim 36", .ctx = {150, 300}, .new_tokens = {150, 1}, .n_heads = 4, .n_kv_heads = 2,
         .head_dim = 36});
    // Tensor-core prefill: key tiles of 64 (32 at head_dim 256) and row tiles of 64 (tokens x group); tokens at
    // both tile edges, windows whose edges fall inside a key tile, chunks after cached keys.
    add({.name = "prefill 63,64,65,127,128,129 tokens, Llama grouping", .ctx = {63, 64, 65, 127, 128, 129},
         .new_tokens = {63, 64, 65, 127, 128, 129}, .n_heads = 8, .n_kv_heads = 2, .kv = DType::F16});
    add({.name = "head_dim 256 prefill 31,32,33,64,65 + chunk", .ctx = {31, 32, 33, 64, 65, 300},
         .new_tokens = {31, 32, 33, 64, 65, 77}, .n_heads = 4, .n_kv_heads = 1, .head_dim = 256, .kv = DType::F16});
    add({.name = "window 40 inside key tiles, head_dim 256", .ctx = {200, 150}, .new_tokens = {200, 50}, .n_heads = 2,
         .n_kv_heads = 1, .head_dim = 256, .window = 40, .kv = DType::F16});
    add({.name = "window 100 inside key tiles, chunk 300..499", .ctx = {500, 130}, .new_tokens = {200, 130},
         .n_heads = 8, .n_kv_heads = 2, .window = 100, .kv = DType::F16});
    add({.name = "window 37, head_dim 64, group 8", .ctx = {260}, .new_tokens = {260}, .n_heads = 16, .n_kv_heads = 2,
         .head_dim = 64, .window = 37, .kv = DType::F16});
    add({.name = "softcap 50, head_dim 128, 2 tokens after 1000", .ctx = {1002, 66}, .new_tokens = {2, 66},
         .n_heads = 4, .n_kv_heads = 2, .softcap = 50.0f, .kv = DType::F16});
    {
        AttnCase c{.name = "decode batch 256, contexts 1..5000", .n_heads = 8, .n_kv_heads = 2, .head_dim = 64,
                   .kv = DType::F16};
        std::mt19937 rng(11);
        for (int s = 0; s < 256; s++) c.ctx.push_back(1 + int(rng() % 5000)), c.new_tokens.push_back(1);
        add(c);
    }
    return v;
}

}  // namespace

TEST_F(BackendOps, PagedAttention) {
    uint32_t seed = 900;
    for (const AttnCase& c : attention_cases()) {
        const HostBatch b = make_batch(c, seed += 10);
        const float scale = 1.0f / std::sqrt(float(c.head_dim));
        const std::vector<float> got = run_attention(gpu(), c, b, scale);
        const std::vector<float> cpu_out = run_attention(cpu(), c, b, scale);
        const std::vector<double> ref = attention_ref(c, b, scale);
        const std::string v = fmt::format("{} ({}, hd {}, {}/{} heads)", c.name, dtype_name(c.kv), c.head_dim,
                                          c.n_heads, c.n_kv_heads);
        // Both backends compute in f32 from the same f32/f16 pool values: ~1e-13 against the double reference,
        // except where the CUDA prefill runs on tensor cores (see tensor_core_prefill).
        const char* prefill_mode = std::getenv("OSPREY_CUDA_ATTN_PREFILL");
        const bool single_f16 = prefill_mode != nullptr && std::string(prefill_mode) == "f16";
        const double tol = tensor_core_prefill(c) && single_f16 ? kF16ProductsNmse : 1e-10;
        expect_close("attention vs ref", v, got, ref, tol);
        expect_close("attention vs cpu", v, got, cpu_out, tol);
    }
}

TEST_F(BackendOps, PagedAttentionIsBatchInvariant) {
    // A sequence's output must not change when other sequences join its batch.
    AttnCase alone{.name = "alone", .ctx = {300}, .new_tokens = {4}, .kv = DType::F16};
    AttnCase crowd{.name = "crowd", .ctx = {300, 5000, 17}, .new_tokens = {4, 1, 17}, .kv = DType::F16};
    const HostBatch a = make_batch(alone, 77);
    HostBatch b = make_batch(crowd, 78);
    // Give sequence 0 of the crowd exactly the alone batch's queries and keys.
    const int64_t width = int64_t(alone.n_heads) * alone.head_dim;
    std::copy(a.q.begin(), a.q.begin() + 4 * width, b.q.begin());
    const int64_t row = int64_t(alone.n_kv_heads) * alone.head_dim * alone.block_size;  // elements per block
    for (int j = 0; j < (300 + 15) / 16; j++) {
        const int64_t src = a.block_tables[size_t(j)], dst = b.block_tables[size_t(j)];
        std::copy(a.k_bytes.begin() + src * row * 2, a.k_bytes.begin() + (src + 1) * row * 2, b.k_bytes.begin() + dst * row * 2);
        std::copy(a.v_bytes.begin() + src * row * 2, a.v_bytes.begin() + (src + 1) * row * 2, b.v_bytes.begin() + dst * row * 2);
    }
    const float scale = 0.088f;
    std::vector<float> ga = run_attention(gpu(), alone, a, scale), gb = run_attention(gpu(), crowd, b, scale);
    gb.resize(ga.size());
    EXPECT_EQ(ga, gb);
}

namespace {

// Copies sequence sa of batch a (its queries, keys and values) over sequence sb of batch b, which must have the
// same context and query count.
void transplant(const AttnCase& c, const HostBatch& a, int sa, HostBatch& b, int sb) {
    const int64_t width = int64_t(c.n_heads) * c.head_dim;
    const int n_q = a.query_start[size_t(sa) + 1] - a.query_start[size_t(sa)];
    ASSERT_EQ(n_q, b.query_start[size_t(sb) + 1] - b.query_start[size_t(sb)]);
    ASSERT_EQ(a.seq_lens[size_t(sa)], b.seq_lens[size_t(sb)]);
    std::copy(a.q.begin() + a.query_start[size_t(sa)] * width, a.q.begin() + (a.query_start[size_t(sa)] + n_q) * width,
              b.q.begin() + b.query_start[size_t(sb)] * width);
    const size_t elem = c.kv == DType::F16 ? 2 : 4;
    const size_t row = size_t(c.n_kv_heads) * c.head_dim * c.block_size * elem;  // bytes per block
    for (int j = 0; j < (a.seq_lens[size_t(sa)] + c.block_size - 1) / c.block_size; j++) {
        const size_t src = size_t(a.block_tables[size_t(sa * a.max_blocks + j)]);
        const size_t dst = size_t(b.block_tables[size_t(sb * b.max_blocks + j)]);
        std::copy(a.k_bytes.begin() + src * row, a.k_bytes.begin() + (src + 1) * row, b.k_bytes.begin() + dst * row);
        std::copy(a.v_bytes.begin() + src * row, a.v_bytes.begin() + (src + 1) * row, b.v_bytes.begin() + dst * row);
    }
}

std::vector<float> token_rows(const AttnCase& c, const HostBatch& b, const std::vector<float>& out, int s) {
    const int64_t width = int64_t(c.n_heads) * c.head_dim;
    return {out.begin() + b.query_start[size_t(s)] * width, out.begin() + b.query_start[size_t(s) + 1] * width};
}

}  // namespace

TEST_F(BackendOps, PagedAttentionIsBatchInvariantAcrossPaths) {
    // Each sequence alone, then inside a mixed batch at another index (other decodes with other split counts,
    // other prefills, a long chunked prefill before it): its output rows must be bit-identical.
    for (DType kv : {DType::F16, DType::F32}) {
        const std::vector<int> ctx = {3000, 1, 170, 40, 2049}, nq = {1, 1, 70, 40, 1};
        AttnCase crowd{.name = "crowd", .n_heads = 8, .n_kv_heads = 2, .head_dim = 128, .window = 0, .kv = kv};
        crowd.ctx = {5000, 300, 3000, 17, 1, 170, 9, 40, 2049};
        crowd.new_tokens = {600, 1, 1, 17, 1, 70, 9, 40, 1};
        const std::vector<int> where = {2, 4, 5, 7, 8};  // crowd index of each probe
        HostBatch b = make_batch(crowd, 500);
        std::vector<std::vector<float>> alone_out;
        for (size_t i = 0; i < ctx.size(); i++) {
            AttnCase alone = crowd;
            alone.ctx = {ctx[i]};
            alone.new_tokens = {nq[i]};
            const HostBatch a = make_batch(alone, 600 + uint32_t(i));
            transplant(crowd, a, 0, b, where[i]);
            alone_out.push_back(run_attention(gpu(), alone, a, 0.07f));
        }
        const std::vector<float> got = run_attention(gpu(), crowd, b, 0.07f);
        for (size_t i = 0; i < ctx.size(); i++)
            EXPECT_EQ(alone_out[i], token_rows(crowd, b, got, where[i]))
                << dtype_name(kv) << ": sequence of context " << ctx[i] << " with " << nq[i] << " query tokens";
    }
}

TEST_F(BackendOps, DISABLED_PagedAttentionTiming) {
    // Llama-3.1-8B shapes (32 heads over 8, head_dim 128, f16 pool, blocks of 16): wall time per call.
    struct Shape {
        std::string name;
        std::vector<int> ctx, new_tokens;
    };
    std::vector<Shape> shapes = {{"decode ctx 600", {600}, {1}},
                                 {"decode ctx 4096", {4096}, {1}},
                                 {"decode ctx 8192", {8192}, {1}},
                                 {"decode ctx 32768", {32768}, {1}},
                                 {"decode 64 x ctx 2000", std::vector<int>(64, 2000), std::vector<int>(64, 1)},
                                 {"decode 128 x ctx 576", std::vector<int>(128, 576), std::vector<int>(128, 1)},
                                 {"decode 124 x ctx 512..640", {}, std::vector<int>(124, 1)},
                                 {"prefill 512", {512}, {512}},
                                 {"prefill 4096", {4096}, {4096}},
                                 {"chunk of 512 after 3584", {4096}, {512}}};
    {
        // The bench's decode batch: ~124 sequences of 512 prompt tokens plus up to 128 generated ones.
        std::mt19937 rng(7);
        for (int i = 0; i < 124; i++) shapes[6].ctx.push_back(512 + int(rng() % 129));
    }
    for (const Shape& sh : shapes) {
        AttnCase c{.name = sh.name, .ctx = sh.ctx, .new_tokens = sh.new_tokens, .n_heads = 32, .n_kv_heads = 8,
                   .head_dim = 128, .kv = DType::F16};
        const HostBatch b = make_batch(c, 3);
        Backend& be = gpu();
        DeviceAttention d(be, c, b, 0.088f);
        const double us = time_us(be, b.n_tokens > 1000 ? 20 : 200, [&] { d.run(be); }, 3);
        // Attention FLOPs: 4 * n_heads * head_dim per visible (query, key) pair (Q K^T and P V).
        double pairs = 0;
        for (int t = 0; t < b.n_tokens; t++) pairs += b.positions[size_t(t)] + 1;
        const double tflops = 4.0 * c.n_heads * c.head_dim * pairs / (us * 1e-6) / 1e12;
        // Decode reads every visible K and V row once: bytes / time against the H200's ~4.8 TB/s.
        const bool decode = b.n_tokens == b.n_seqs;
        const double kv_bytes = 2.0 * pairs * c.n_kv_heads * c.head_dim * 2.0;
        const double gbs = kv_bytes / (us * 1e-6) / 1e9;
        std::printf("paged attention %-28s %10.1f us per call %8.1f TFLOP/s", sh.name.c_str(), us, tflops);
        if (decode) std::printf(" %8.1f GB/s (K/V %.1f MB)", gbs, kv_bytes / 1e6);
        std::printf("\n");
    }
}
