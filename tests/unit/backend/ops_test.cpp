// Element-wise ops, embedding, rope, kv_write and paged attention of the CPU backend against plain references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

Tensor f32(std::vector<float>& v, std::initializer_list<int64_t> shape) { return Tensor(v.data(), DType::F32, shape); }
Tensor i32(std::vector<int32_t>& v) { return Tensor(v.data(), DType::I32, {int64_t(v.size())}); }

}  // namespace

TEST(CpuOps, RmsNormMatchesReference) {
    auto be = make_cpu_backend(2);
    const int64_t R = 3, d = 77;
    auto x = random_floats(size_t(R * d), 1, -3, 3);
    auto w = random_floats(size_t(d), 2);
    std::vector<float> out(x.size()), ref(x.size());
    be->rms_norm(f32(out, {R, d}), f32(x, {R, d}), f32(w, {d}), 1e-6f);
    cpu::rms_norm_ref(ref.data(), x.data(), w.data(), R, d, 1e-6f);
    for (size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], ref[i], 1e-5 * std::fabs(ref[i]) + 1e-6) << i;
    // eps inside the square root: a zero row gives 0, and out may alias x.
    std::vector<float> z(size_t(d), 0.0f);
    be->rms_norm(f32(z, {1, d}), f32(z, {1, d}), f32(w, {d}), 1e-6f);
    for (float v : z) EXPECT_EQ(v, 0.0f);
    std::vector<float> c(size_t(d), 2.0f), ones(size_t(d), 1.0f);
    be->rms_norm(f32(c, {1, d}), f32(c, {1, d}), f32(ones, {d}), 0.5f);
    EXPECT_NEAR(c[0], 2.0f / std::sqrt(4.0f + 0.5f), 1e-6);
}

TEST(CpuOps, GatedActivations) {
    auto be = make_cpu_backend(2);
    const int64_t n = 20001;  // large enough to take the threaded path
    auto g = random_floats(size_t(n), 3, -8, 8);
    auto u = random_floats(size_t(n), 4);
    for (Activation act : {Activation::Silu, Activation::GeluTanh}) {
        std::vector<float> out(static_cast<size_t>(n));
        be->gated_activation(f32(out, {n}), f32(g, {n}), f32(u, {n}), act);
        for (int64_t i = 0; i < n; i++) {
            const float a = act == Activation::Silu ? cpu::silu_ref(g[size_t(i)]) : cpu::gelu_tanh_ref(g[size_t(i)]);
            ASSERT_NEAR(out[size_t(i)], a * u[size_t(i)], 2e-6 * std::fabs(a) + 1e-6) << i;
        }
    }
    EXPECT_NEAR(cpu::gelu_tanh_ref(1.0f), 0.8411920f, 1e-6);  // known value of tanh-approximate GELU
    EXPECT_NEAR(cpu::silu_ref(1.0f), 0.7310586f, 1e-6);
}

TEST(CpuOps, RopeNeoxAndPairs) {
    auto be = make_cpu_backend(1);
    const int64_t T = 5;
    RopeParams p;
    p.n_heads = 3, p.head_dim = 16, p.rotary_dim = 16;
    std::vector<float> inv(8);
    for (int i = 0; i < 8; i++) inv[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / 16.0f);
    std::vector<int32_t> pos = {0, 1, 7, 100, 4097};
    for (bool neox : {true, false}) {
        p.neox = neox;
        auto x = random_floats(size_t(T * 48), 5);
        auto ref = x;
        be->rope(f32(x, {T, 48}), i32(pos), f32(inv, {8}), p);
        cpu::rope_ref(ref.data(), pos.data(), inv.data(), T, p);
        for (size_t i = 0; i < x.size(); i++) ASSERT_NEAR(x[i], ref[i], 2e-6) << "neox=" << neox << " i=" << i;
    }
    // Position 0 is the identity; neox rotates (i, i + half): a unit vector on dim 0 at angle pi/2 goes to dim 8.
    std::vector<float> e(16, 0.0f);
    e[0] = 1.0f;
    std::vector<int32_t> one = {1};
    std::vector<float> f(8, 0.0f);
    f[0] = float(M_PI / 2);
    p.n_heads = 1, p.neox = true;
    be->rope(f32(e, {1, 16}), i32(one), f32(f, {8}), p);
    EXPECT_NEAR(e[0], 0.0f, 1e-6);
    EXPECT_NEAR(e[8], 1.0f, 1e-6);
}

// The backend keeps a step's RoPE angles for the next layers: new positions or frequencies in the same buffers
// (as the engine's next step writes them) must not reuse them, and rope_kv_write rotates as rope() does.
TEST(CpuOps, RopeAnglesFollowTheBuffersContents) {
    auto be = make_cpu_backend(2);
    const int64_t T = 9;
    RopeParams p;
    p.n_heads = 2, p.head_dim = 16, p.rotary_dim = 16, p.neox = true;
    std::vector<float> inv(8);
    for (int i = 0; i < 8; i++) inv[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / 16.0f);
    std::vector<int32_t> pos = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    const Tensor pos_t = i32(pos), inv_t = f32(inv, {8});  // views: later edits of pos / inv show through
    auto check = [&](const char* what) {
        auto x = random_floats(size_t(T * 32), 6);
        auto ref = x;
        be->rope(f32(x, {T, 32}), pos_t, inv_t, p);
        cpu::rope_ref(ref.data(), pos.data(), inv.data(), T, p);
        for (size_t i = 0; i < x.size(); i++) ASSERT_NEAR(x[i], ref[i], 2e-6) << what << " i=" << i;
    };
    check("first positions");
    for (int32_t& v : pos) v += 500;
    check("positions rewritten in place");
    for (float& v : inv) v *= 0.5f;
    check("frequencies rewritten in place");

    // rope_kv_write on q and k, against rope() on copies of them (angles already kept from the calls above).
    RopeParams pk = p;
    pk.n_heads = 1;
    auto q = random_floats(size_t(T * 32), 7), k = random_floats(size_t(T * 16), 8);
    auto v = random_floats(size_t(T * 16), 9);
    auto q_ref = q, k_ref = k;
    std::vector<uint16_t> kp(size_t(3 * 4 * 16), 0), vp(kp.size(), 0);  // 3 blocks of 4 slots
    KvLayerView kv{Tensor(kp.data(), DType::F16, {3, 4, 1, 16}), Tensor(vp.data(), DType::F16, {3, 4, 1, 16}), 4};
    std::vector<int32_t> slots(static_cast<size_t>(T), 0);
    for (int64_t t = 0; t < T; t++) slots[size_t(t)] = int32_t(t);
    AttentionBatch b;
    b.positions = pos_t;
    b.slot_mapping = i32(slots);
    be->rope_kv_write(f32(q, {T, 32}), f32(k, {T, 16}), f32(v, {T, 16}), inv_t, p, pk, kv, b);
    be->rope(f32(q_ref, {T, 32}), pos_t, inv_t, p);
    be->rope(f32(k_ref, {T, 16}), pos_t, inv_t, pk);
    EXPECT_EQ(q, q_ref);
    EXPECT_EQ(k, k_ref);
    for (size_t i = 0; i < k_ref.size(); i++) ASSERT_EQ(kp[i], fp32_to_fp16(k_ref[i])) << i;
}

TEST(CpuOps, EmbeddingEveryTableDtype) {
    auto be = make_cpu_backend(1);
    const int64_t V = 6;
    std::vector<int32_t> ids = {5, 0, 3, 3};
    for (DType dtype : matmul_dtypes()) {
        ASSERT_TRUE(be->supports_embedding(dtype)) << dtype_name(dtype);
        const int64_t d = test_k(dtype);
        auto table = random_weights(dtype, V, d, 9);
        std::vector<float> out(size_t(4 * d));
        be->embedding(f32(out, {4, d}), Tensor(table.data(), dtype, {V, d}), i32(ids), 2.5f);
        std::vector<float> row(static_cast<size_t>(d));
        for (int t = 0; t < 4; t++) {
            cpu::dequantize_row_ref(dtype, table.data() + size_t(ids[size_t(t)]) * dtype_row_bytes(dtype, d),
                                    row.data(), d);
            for (int64_t i = 0; i < d; i++) ASSERT_EQ(out[size_t(t * d + i)], row[size_t(i)] * 2.5f) << dtype_name(dtype);
        }
    }
}

TEST(CpuOps, ElementwiseAndGather) {
    auto be = make_cpu_backend(2);
    auto a = random_floats(35, 1), b = random_floats(35, 2), bias = random_floats(7, 3);
    std::vector<float> out(35);
    be->add(f32(out, {5, 7}), f32(a, {5, 7}), f32(b, {5, 7}));
    for (size_t i = 0; i < 35; i++) EXPECT_EQ(out[i], a[i] + b[i]);
    auto x = a;
    be->add_bias(f32(x, {5, 7}), f32(bias, {7}));
    for (size_t i = 0; i < 35; i++) EXPECT_EQ(x[i], a[i] + bias[i % 7]);
    x = a;
    be->scale(f32(x, {35}), 3.0f, 0.0f);
    for (size_t i = 0; i < 35; i++) EXPECT_EQ(x[i], a[i] * 3.0f);
    x = a;
    be->scale(f32(x, {35}), 30.0f, 2.0f);
    for (size_t i = 0; i < 35; i++) EXPECT_NEAR(x[i], 2.0f * std::tanh(a[i] * 30.0f / 2.0f), 1e-6);
    std::vector<int32_t> rows = {4, 0, 4};
    std::vector<float> g(21);
    be->gather_rows(f32(g, {3, 7}), f32(a, {5, 7}), i32(rows));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 7; j++) EXPECT_EQ(g[size_t(i * 7 + j)], a[size_t(rows[size_t(i)] * 7 + j)]);
}

// ---- paged attention ----

namespace {

struct SeqSpec {
    int ctx;      // total tokens of context after this step
    int n_query;  // tokens of this step (the last n_query positions)
};

// Naive dense attention of one query on a sequence's full K/V [ctx, n_kv, hd] (double precision).
void dense_attention(const float* q, const std::vector<float>& K, const std::vector<float>& Vv, int pos,
                     const AttentionParams& p, float* out) {
    const int group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
    for (int h = 0; h < p.n_heads; h++) {
        const int kvh = h / group;
        const int lo = p.window > 0 ? std::max(0, pos - p.window + 1) : 0;
        std::vector<double> s;
        for (int j = lo; j <= pos; j++) {
            double d = 0;
            for (int i = 0; i < hd; i++) d += double(q[h * hd + i]) * K[size_t((j * p.n_kv_heads + kvh) * hd + i)];
            d *= p.scale;
            if (p.softcap > 0) d = p.softcap * std::tanh(d / p.softcap);
            s.push_back(d);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int i = 0; i < hd; i++) {
            double acc = 0;
            for (int j = lo; j <= pos; j++)
                acc += s[size_t(j - lo)] * Vv[size_t((j * p.n_kv_heads + kvh) * hd + i)];
            out[h * hd + i] = float(acc / sum);
        }
    }
}

// Runs one step over the given sequences (their whole context is written with kv_write in this step), with
// block tables either scattered (shuffled physical blocks) or contiguous. Returns out [T, n_heads * hd].
std::vector<float> run_attention(Backend& be, const std::vector<SeqSpec>& seqs, const AttentionParams& p,
                                 DType kv_dtype, bool scattered, const std::vector<std::vector<float>>& Ks,
                                 const std::vector<std::vector<float>>& Vs, const std::vector<std::vector<float>>& Qs) {
    const int bs = 4, hd = p.head_dim, row = p.n_kv_heads * hd;
    int max_blocks = 0, total_blocks = 0;
    for (const auto& s : seqs) max_blocks = std::max(max_blocks, (s.ctx + bs - 1) / bs), total_blocks += (s.ctx + bs - 1) / bs;
    const int n_blocks = total_blocks + 3;
    std::vector<int32_t> phys(static_cast<size_t>(n_blocks));
    std::iota(phys.begin(), phys.end(), 0);
    if (scattered) std::reverse(phys.begin(), phys.end()), std::swap(phys[1], phys[size_t(n_blocks / 2)]);
    const size_t esz = kv_dtype == DType::F16 ? 2 : 4;
    std::vector<uint8_t> kpool(size_t(n_blocks) * bs * size_t(row) * esz, 0xFF), vpool(kpool.size(), 0xFF);
    KvLayerView kv{Tensor(kpool.data(), kv_dtype, {n_blocks, bs, p.n_kv_heads, hd}),
                   Tensor(vpool.data(), kv_dtype, {n_blocks, bs, p.n_kv_heads, hd}), bs};

    // Write every context token's K/V (one kv_write per sequence), then attend with this step's queries.
    std::vector<int32_t> tables(seqs.size() * size_t(max_blocks), -1);
    int next = 0;
    for (size_t s = 0; s < seqs.size(); s++)
        for (int b = 0; b < (seqs[s].ctx + bs - 1) / bs; b++) tables[s * size_t(max_blocks) + size_t(b)] = phys[size_t(next++)];
    for (size_t s = 0; s < seqs.size(); s++) {
        std::vector<int32_t> slots;
        for (int j = 0; j < seqs[s].ctx; j++) slots.push_back(tables[s * size_t(max_blocks) + size_t(j / bs)] * bs + j % bs);
        AttentionBatch wb;
        wb.slot_mapping = i32(slots);
        auto k = Ks[s], v = Vs[s];
        be.kv_write(kv, f32(k, {seqs[s].ctx, row}), f32(v, {seqs[s].ctx, row}), wb);
    }
    std::vector<int32_t> qstart = {0}, lens, positions;
    std::vector<float> q;
    int max_len = 0;
    for (size_t s = 0; s < seqs.size(); s++) {
        qstart.push_back(qstart.back() + seqs[s].n_query);
        lens.push_back(seqs[s].ctx);
        max_len = std::max(max_len, seqs[s].ctx);
        for (int i = 0; i < seqs[s].n_query; i++) positions.push_back(seqs[s].ctx - seqs[s].n_query + i);
        q.insert(q.end(), Qs[s].begin(), Qs[s].end());
    }
    AttentionBatch batch;
    batch.n_seqs = int(seqs.size());
    batch.n_tokens = qstart.back();
    batch.max_blocks_per_seq = max_blocks;
    batch.max_seq_len = max_len;
    batch.query_start = i32(qstart);
    batch.seq_lens = i32(lens);
    batch.block_tables = Tensor(tables.data(), DType::I32, {int64_t(seqs.size()), max_blocks});
    batch.positions = i32(positions);
    std::vector<float> out(q.size(), NAN);
    be.paged_attention(f32(out, {batch.n_tokens, p.n_heads * hd}), f32(q, {batch.n_tokens, p.n_heads * hd}), kv, batch, p);
    return out;
}

}  // namespace

TEST(CpuAttention, PagedMatchesDenseScatteredContiguousAndAlone) {
    const std::vector<SeqSpec> seqs = {{13, 13}, {1, 1}, {22, 3}, {9, 1}};  // prefill, first token, chunk, decode
    for (const std::string isa : {"scalar", "avx512"}) {
        auto be = cpu::make_cpu_backend_with_isa(2, isa.c_str());
        for (DType kv_dtype : {DType::F32, DType::F16}) {
            for (int window : {0, 5}) {
                for (float softcap : {0.0f, 20.0f}) {
                    AttentionParams p;
                    p.n_heads = 6, p.n_kv_heads = 2, p.head_dim = 20, p.scale = 0.3f, p.window = window, p.softcap = softcap;
                    std::vector<std::vector<float>> Ks, Vs, Qs;
                    for (size_t s = 0; s < seqs.size(); s++) {
                        Ks.push_back(random_floats(size_t(seqs[s].ctx * 40), uint32_t(100 + s), -2, 2));
                        Vs.push_back(random_floats(size_t(seqs[s].ctx * 40), uint32_t(200 + s)));
                        Qs.push_back(random_floats(size_t(seqs[s].n_query * 120), uint32_t(300 + s), -2, 2));
                        if (kv_dtype == DType::F16)  // the reference sees what the F16 pool stores
                            for (auto* v : {&Ks.back(), &Vs.back()})
                                for (float& f : *v) f = fp16_to_fp32(fp32_to_fp16(f));
                    }
                    const auto scattered = run_attention(*be, seqs, p, kv_dtype, true, Ks, Vs, Qs);
                    const auto contiguous = run_attention(*be, seqs, p, kv_dtype, false, Ks, Vs, Qs);
                    ASSERT_EQ(std::memcmp(scattered.data(), contiguous.data(), scattered.size() * 4), 0);
                    int t = 0;
                    for (size_t s = 0; s < seqs.size(); s++) {
                        // The same sequence alone in its batch gives bit-identical rows.
                        const auto alone = run_attention(*be, {seqs[s]}, p, kv_dtype, true, {Ks[s]}, {Vs[s]}, {Qs[s]});
                        ASSERT_EQ(std::memcmp(alone.data(), scattered.data() + size_t(t) * 120, alone.size() * 4), 0)
                            << "seq " << s;
                        for (int i = 0; i < seqs[s].n_query; i++, t++) {
                            std::vector<float> ref(120);
                            const int pos = seqs[s].ctx - seqs[s].n_query + i;
                            dense_attention(Qs[s].data() + i * 120, Ks[s], Vs[s], pos, p, ref.data());
                            for (int j = 0; j < 120; j++)
                                ASSERT_NEAR(scattered[size_t(t * 120 + j)], ref[size_t(j)], 2e-5)
                                    << isa << " kv=" << dtype_name(kv_dtype) << " window=" << window
                                    << " softcap=" << softcap << " seq=" << s << " token=" << i << " j=" << j;
                        }
                    }
                }
            }
        }
    }
}

TEST(CpuAttention, KvWriteF16AndSkipsNegativeSlots) {
    auto be = make_cpu_backend(1);
    std::vector<uint16_t> kp(2 * 4 * 6, 0), vp(kp.size(), 0);
    KvLayerView kv{Tensor(kp.data(), DType::F16, {2, 4, 1, 6}), Tensor(vp.data(), DType::F16, {2, 4, 1, 6}), 4};
    auto k = random_floats(12, 1), v = random_floats(12, 2);
    std::vector<int32_t> slots = {6, -1};
    AttentionBatch b;
    b.slot_mapping = i32(slots);
    be->kv_write(kv, f32(k, {2, 6}), f32(v, {2, 6}), b);
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(kp[size_t(36 + i)], fp32_to_fp16(k[size_t(i)]));
        EXPECT_EQ(vp[size_t(36 + i)], fp32_to_fp16(v[size_t(i)]));
    }
    EXPECT_EQ(std::count(kp.begin(), kp.end(), 0), 42);
}

// The KV cache's f32 -> f16 rounding: every ISA bit-identical to fp32_to_fp16 (nearest even) on normal, subnormal,
// halfway, overflowing and infinite values.
TEST(CpuOps, F32ToF16MatchesScalarRounding) {
    std::vector<float> x = random_floats(1000, 21, -70000.0f, 70000.0f);
    for (float v : random_floats(500, 22, -1e-4f, 1e-4f)) x.push_back(v);  // f16 subnormals
    for (float v : random_floats(300, 23, -2.0f, 2.0f)) x.push_back(v);
    for (float v : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e9f, 5.96e-8f, 2.98e-8f, 2.99e-8f,
                    1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()})
        x.push_back(v);
    for (const char* isa : {"scalar", "avx2", "avx512"}) {
        const cpu::CpuKernels k = cpu::select_kernels(isa);
        std::vector<uint16_t> h(x.size());
        k.f32_to_f16(h.data(), x.data(), int64_t(x.size()));
        for (size_t i = 0; i < x.size(); i++) ASSERT_EQ(h[i], fp32_to_fp16(x[i])) << isa << " x=" << x[i];
    }
}

// The vectorised exponential used by softmax: every ISA within 2 ulp-ish of std::exp, sums in a fixed order.
TEST(CpuOps, ExpSubSumMatchesStdExp) {
    for (const char* isa : {"scalar", "avx2", "avx512"}) {
        const cpu::CpuKernels k = cpu::select_kernels(isa);
        for (int64_t n : {int64_t(1), int64_t(7), int64_t(8), int64_t(333)}) {
            auto x = random_floats(size_t(n), 11, -90.0f, 10.0f);
            const float mx = 3.0f;
            std::vector<float> y = x;
            const float sum = k.exp_sub_sum(y.data(), n, mx);
            double ref_sum = 0;
            for (int64_t i = 0; i < n; i++) {
                const double e = std::exp(double(x[size_t(i)] - mx));  // the f32 difference, as the kernel forms it
                ref_sum += e;
                ASSERT_NEAR(y[size_t(i)], e, 3e-7 * e + 1e-37) << isa << " x=" << x[size_t(i)];
            }
            EXPECT_NEAR(sum, ref_sum, 1e-6 * ref_sum) << isa << " n=" << n;
        }
    }
}

// Async scheduling's helpers, in their default (host) form: dst[dst_index[k]] = src[src_index[k]], and readbacks
// finished in order, each returning the bytes as they were when it began.
TEST(CpuOps, CopyIndexedI32AndReadbacks) {
    auto be = make_cpu_backend(1);
    std::vector<int32_t> dst(40), src(25), di = {7, 0, 39, 12}, si = {24, 3, 3, 0};
    std::iota(dst.begin(), dst.end(), -100);
    for (size_t i = 0; i < src.size(); i++) src[i] = int32_t(1000 + 7 * i);
    std::vector<int32_t> expect = dst;
    for (size_t k = 0; k < di.size(); k++) expect[size_t(di[k])] = src[size_t(si[k])];
    be->copy_indexed_i32(i32(dst), i32(di), i32(src), i32(si));
    EXPECT_EQ(dst, expect);
    std::vector<int32_t> bad = {40};
    std::vector<int32_t> zero = {0};
    EXPECT_THROW(be->copy_indexed_i32(i32(dst), i32(bad), i32(src), i32(zero)), Error);

    std::vector<int32_t> a = {1, 2, 3}, got_a(3), got_b(3);
    const uint64_t ta = be->begin_readback(a.data(), 12);
    a = {4, 5, 6};
    const uint64_t tb = be->begin_readback(a.data(), 12);
    EXPECT_THROW(be->finish_readback(tb, got_b.data()), Error);  // out of order
    be->finish_readback(ta, got_a.data());
    be->finish_readback(tb, got_b.data());
    EXPECT_EQ(got_a, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(got_b, (std::vector<int32_t>{4, 5, 6}));
}
