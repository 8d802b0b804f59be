// Per-op suite of the CUDA backend (in the spirit of llama.cpp's test-backend-ops): every Backend op runs on the
// CUDA backend and on the CPU backend with the same random inputs, and the outputs are compared by normalised
// mean squared error (NMSE = sum (a - b)^2 / sum b^2) against a threshold stated per op and path. Matmuls and
// attention are also checked against independent references computed in double (cpu::matmul_ref, and a plain
// attention loop below). Every output is poisoned with NaN before the op (so an unwritten element fails) and
// framed by guard bytes that must survive. Without a GPU the op tests skip; the no-GPU error test still runs.
// A table of every comparison is printed at the end (and written to $OSPREY_BACKEND_OPS_REPORT when set).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "core/half.h"
#include "unit/backend/backend_test_util.h"
#include "unit/backend_ops/backend_ops_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

class ReportEnvironment : public ::testing::Environment {
  public:
    void TearDown() override {
        if (report().empty()) return;
        std::string text = fmt::format("{:<18} {:<52} {:>10} {:>10} {:>8}  {}\n", "op", "variant", "nmse", "max_abs",
                                       "thresh", "ok");
        for (const ReportRow& r : report())
            text += fmt::format("{:<18} {:<52} {:>10.2e} {:>10.2e} {:>8.0e}  {}\n", r.op, r.variant, r.nmse, r.max_abs,
                                r.threshold, r.pass ? "yes" : "NO");
        std::fputs(text.c_str(), stdout);
        if (const char* path = std::getenv("OSPREY_BACKEND_OPS_REPORT")) std::ofstream(path) << text;
    }
};

const auto* const kReportEnv = ::testing::AddGlobalTestEnvironment(new ReportEnvironment);

}  // namespace

// ---------------------------------------------------------------- device, memory, capabilities

TEST(CudaBackend, MissingGpuOrDeviceIsAnError) {
    const int n = cuda_device_count();
    if (n == 0) {
        try {
            (void)make_cuda_backend(0);
            FAIL() << "make_cuda_backend succeeded without a GPU";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
            EXPECT_NE(std::string(e.what()).find("no usable CUDA GPU"), std::string::npos) << e.what();
        }
    } else {
        try {
            (void)make_cuda_backend(n);
            FAIL() << "device index " << n << " of " << n << " accepted";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::NotFound) << e.what();
        }
    }
}

TEST_F(BackendOps, MemoryAndCapabilities) {
    EXPECT_EQ(gpu().device(), Device::Cuda);
    EXPECT_NE(gpu().name().find("cuda"), std::string::npos);
    std::vector<float> host = random_floats(1000, 1);
    DevTensor a(gpu(), DType::F32, {1000}, host.data());
    DevTensor b(gpu(), DType::F32, {1000});
    gpu().copy(b.t.data, a.t.data, 4000);
    EXPECT_EQ(b.get<float>(), host);
    EXPECT_TRUE(b.guards_intact());
    for (DType dt : matmul_dtypes()) {
        EXPECT_TRUE(gpu().supports_matmul(dt)) << dtype_name(dt);
        EXPECT_TRUE(gpu().supports_embedding(dt)) << dtype_name(dt);
    }
    for (DType dt : {DType::Q8_K, DType::Q8_1, DType::I32, DType::F64}) {
        EXPECT_FALSE(gpu().supports_matmul(dt)) << dtype_name(dt);
        EXPECT_FALSE(gpu().supports_embedding(dt)) << dtype_name(dt);
    }
    EXPECT_TRUE(gpu().supports_kv_dtype(DType::F32));
    EXPECT_TRUE(gpu().supports_kv_dtype(DType::F16));
    EXPECT_FALSE(gpu().supports_kv_dtype(DType::BF16));
    EXPECT_THROW((void)gpu().alloc(size_t(1) << 50), Error);  // a petabyte: OutOfMemory, not a crash
}

// ---------------------------------------------------------------- matmul

namespace {

// NMSE thresholds against the double reference. M <= 8 runs the f32 matrix-vector kernels (f32 products and
// sums: ~1e-13); larger M runs cuBLAS with x rounded to f16 (2^-11 relative: ~1e-7) or bf16 (2^-8: ~5e-6), and
// block types dequantized to f16; f32 weights use SGEMM.
double matmul_threshold(DType dt, int64_t M) {
    if (M <= 8 || dt == DType::F32) return 1e-10;
    if (dt == DType::BF16) return 3e-5;
    return 1e-6;
}

}  // namespace

class MatmulOps : public BackendOps, public ::testing::WithParamInterface<DType> {};

TEST_P(MatmulOps, MatchesCpuAndReference) {
    const DType dt = GetParam();
    struct Shape {
        int64_t N, K;
        std::vector<int64_t> Ms;
    };
    const std::vector<Shape> shapes = {
        {97, test_k(dt), {1, 2, 3, 5, 8, 9, 64, 256}},  // N not a multiple of the 4 rows a block handles
        {512, 2048, {1, 8, 256}},
    };
    uint32_t seed = 100;
    for (const Shape& s : shapes) {
        const std::vector<uint8_t> w = random_weights(dt, s.N, s.K, seed++);
        DevTensor wg(gpu(), dt, {s.N, s.K}, w.data());
        DevTensor wc(cpu(), dt, {s.N, s.K}, w.data());
        for (int64_t M : s.Ms) {
            const std::vector<float> x = random_floats(size_t(M * s.K), seed++);
            std::vector<float> ref32(size_t(M * s.N));
            cpu::matmul_ref(ref32.data(), x.data(), dt, w.data(), M, s.N, s.K);
            DevTensor xg(gpu(), DType::F32, {M, s.K}, x.data()), og(gpu(), DType::F32, {M, s.N});
            DevTensor xc(cpu(), DType::F32, {M, s.K}, x.data()), oc(cpu(), DType::F32, {M, s.N});
            gpu().matmul(og.t, xg.t, wg.t);
            cpu().matmul(oc.t, xc.t, wc.t);
            const std::vector<float> got = fetch(og, "matmul"), cpu_out = fetch(oc, "matmul cpu");
            const std::string v = fmt::format("{} M={} N={} K={} ({})", dtype_name(dt), M, s.N, s.K,
                                              M <= 8 ? "gemv" : "cublas");
            const double thr = matmul_threshold(dt, M);
            expect_close("matmul vs ref", v, got, ref32, thr);
            // The CPU backend quantizes activations to 16 bits for block types (~1e-9), so allow 1e-6 there.
            expect_close("matmul vs cpu", v, got, cpu_out, std::max(thr, is_quantized(dt) ? 1e-6 : 1e-10));
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, MatmulOps, ::testing::ValuesIn(matmul_dtypes()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST_F(BackendOps, GemvIsBatchInvariant) {
    // out[m, n] of the small-batch kernel must not depend on M or on the row's place in the batch.
    for (DType dt : {DType::F16, DType::Q4_K, DType::Q8_0}) {
        const int64_t N = 64, K = 512;
        const std::vector<uint8_t> w = random_weights(dt, N, K, 7);
        const std::vector<float> x = random_floats(size_t(8 * K), 8);
        DevTensor wg(gpu(), dt, {N, K}, w.data());
        std::vector<std::vector<float>> outs;
        for (int64_t M : {8, 5, 1}) {
            // Row 0 of the M=1 run, row 0 of M=5, row 0 of M=8 all hold x's row 0.
            DevTensor xg(gpu(), DType::F32, {M, K}, x.data()), og(gpu(), DType::F32, {M, N});
            gpu().matmul(og.t, xg.t, wg.t);
            std::vector<float> o = og.get<float>();
            o.resize(size_t(N));
            outs.push_back(o);
        }
        EXPECT_EQ(outs[0], outs[1]) << dtype_name(dt);
        EXPECT_EQ(outs[0], outs[2]) << dtype_name(dt);
    }
}

// ---------------------------------------------------------------- embedding

TEST_F(BackendOps, EmbeddingAllTableTypes) {
    for (DType dt : matmul_dtypes()) {
        const int64_t V = 300, d = test_k(dt);
        const std::vector<uint8_t> table = random_weights(dt, V, d, 11);
        DevTensor tg(gpu(), dt, {V, d}, table.data()), tc(cpu(), dt, {V, d}, table.data());
        for (int64_t T : {1, 300}) {
            std::vector<int32_t> ids = random_ints(size_t(T), 0, int(V - 1), 12);
            ids[0] = int32_t(V - 1);  // last row
            if (T > 2) ids[1] = 0, ids[2] = 0;
            for (float scale : {1.0f, 3.5f}) {
                DevTensor ig(gpu(), DType::I32, {T}, ids.data()), ic(cpu(), DType::I32, {T}, ids.data());
                DevTensor og(gpu(), DType::F32, {T, d}), oc(cpu(), DType::F32, {T, d});
                gpu().embedding(og.t, tg.t, ig.t, scale);
                cpu().embedding(oc.t, tc.t, ic.t, scale);
                expect_close("embedding", fmt::format("{} T={} d={} scale={}", dtype_name(dt), T, d, scale),
                             fetch(og, "embedding"), fetch(oc, "embedding cpu"), 1e-12);
            }
        }
    }
}

// ---------------------------------------------------------------- norm, activation, rope

TEST_F(BackendOps, RmsNorm) {
    struct Case {
        int64_t rows, d;
    };
    for (const Case c : {Case{1, 64}, Case{7, 77}, Case{256, 4096}, Case{3, 5120}}) {
        const std::vector<float> x = random_floats(size_t(c.rows * c.d), 21, -3, 3);
        const std::vector<float> w = random_floats(size_t(c.d), 22);
        for (bool in_place : {false, true}) {
            DevTensor xg(gpu(), DType::F32, {c.rows, c.d}, x.data()), xc(cpu(), DType::F32, {c.rows, c.d}, x.data());
            DevTensor wg(gpu(), DType::F32, {c.d}, w.data()), wc(cpu(), DType::F32, {c.d}, w.data());
            DevTensor og(gpu(), DType::F32, {c.rows, c.d}), oc(cpu(), DType::F32, {c.rows, c.d});
            gpu().rms_norm(in_place ? xg.t : og.t, xg.t, wg.t, 1e-6f);
            cpu().rms_norm(in_place ? xc.t : oc.t, xc.t, wc.t, 1e-6f);
            expect_close("rms_norm", fmt::format("rows={} d={}{}", c.rows, c.d, in_place ? " in place" : ""),
                         fetch(in_place ? xg : og, "rms_norm"), fetch(in_place ? xc : oc, "rms_norm cpu"), 1e-12);
        }
    }
}

TEST_F(BackendOps, GatedActivation) {
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(256) * 1536}) {
        const std::vector<float> g = random_floats(size_t(n), 31, -8, 8), u = random_floats(size_t(n), 32);
        for (Activation act : {Activation::Silu, Activation::GeluTanh}) {
            DevTensor gg(gpu(), DType::F32, {n}, g.data()), ug(gpu(), DType::F32, {n}, u.data());
            DevTensor gc(cpu(), DType::F32, {n}, g.data()), uc(cpu(), DType::F32, {n}, u.data());
            DevTensor og(gpu(), DType::F32, {n}), oc(cpu(), DType::F32, {n});
            gpu().gated_activation(og.t, gg.t, ug.t, act);
            cpu().gated_activation(oc.t, gc.t, uc.t, act);
            expect_close("gated_activation", fmt::format("{} n={}", act == Activation::Silu ? "silu" : "gelu_tanh", n),
                         fetch(og, "gated"), fetch(oc, "gated cpu"), 1e-12);
        }
    }
}

TEST_F(BackendOps, Rope) {
    for (int64_t T : {1, 37, 256}) {
        for (int hd : {64, 128}) {
            for (bool neox : {true, false}) {
                RopeParams p;
                p.n_heads = 4, p.head_dim = hd, p.rotary_dim = hd, p.neox = neox;
                std::vector<float> inv(size_t(hd / 2));
                for (int i = 0; i < hd / 2; i++) inv[size_t(i)] = std::pow(500000.0f, -2.0f * float(i) / float(hd));
                std::vector<int32_t> pos = random_ints(size_t(T), 0, 32767, 41);
                pos[0] = 0;
                const std::vector<float> x = random_floats(size_t(T * 4 * hd), 42);
                DevTensor xg(gpu(), DType::F32, {T, 4 * hd}, x.data()), xc(cpu(), DType::F32, {T, 4 * hd}, x.data());
                DevTensor pg(gpu(), DType::I32, {T}, pos.data()), pc(cpu(), DType::I32, {T}, pos.data());
                DevTensor fg(gpu(), DType::F32, {hd / 2}, inv.data()), fc(cpu(), DType::F32, {hd / 2}, inv.data());
                gpu().rope(xg.t, pg.t, fg.t, p);
                cpu().rope(xc.t, pc.t, fc.t, p);
                expect_close("rope", fmt::format("T={} head_dim={} {}", T, hd, neox ? "neox" : "pairs"),
                             fetch(xg, "rope"), fetch(xc, "rope cpu"), 1e-12);
            }
        }
    }
}

// ---------------------------------------------------------------- element-wise

TEST_F(BackendOps, Elementwise) {
    const int64_t R = 33, N = 4099;
    const std::vector<float> a = random_floats(size_t(R * N), 51, -20, 20), b = random_floats(size_t(R * N), 52);
    const std::vector<float> bias = random_floats(size_t(N), 53);
    auto run = [&](Backend& be, int op) {
        DevTensor x(be, DType::F32, {R, N}, a.data()), y(be, DType::F32, {R, N}, b.data());
        DevTensor bi(be, DType::F32, {N}, bias.data()), out(be, DType::F32, {R, N});
        switch (op) {
            case 0: be.add(out.t, x.t, y.t); return fetch(out, "add");
            case 1: be.add(x.t, x.t, y.t); return fetch(x, "add in place");
            case 2: be.add_bias(x.t, bi.t); return fetch(x, "add_bias");
            case 3: be.scale(x.t, 0.37f, 0.0f); return fetch(x, "scale");
            default: be.scale(x.t, 1.5f, 15.0f); return fetch(x, "scale softcap");
        }
    };
    const char* names[] = {"add", "add (out aliases a)", "add_bias", "scale", "scale + softcap 15"};
    for (int op = 0; op < 5; op++)
        expect_close("elementwise", fmt::format("{} [{}, {}]", names[op], R, N), run(gpu(), op), run(cpu(), op),
                     op < 4 ? 0.0 : 1e-12);

    std::vector<int32_t> rows = {32, 0, 5, 5, 17};
    auto gather = [&](Backend& be) {
        DevTensor x(be, DType::F32, {R, N}, a.data()), ri(be, DType::I32, {5}, rows.data()),
            out(be, DType::F32, {5, N});
        be.gather_rows(out.t, x.t, ri.t);
        return fetch(out, "gather_rows");
    };
    std::vector<float> expect;
    for (int32_t r : rows) expect.insert(expect.end(), a.begin() + r * N, a.begin() + (r + 1) * N);
    expect_close("gather_rows", "5 of 33 rows, repeats", gather(gpu()), expect, 0.0);
}

// ---------------------------------------------------------------- kv_write

TEST_F(BackendOps, KvWrite) {
    const int bs = 16, n_blocks = 8, n_kv = 2, hd = 64;
    const int64_t row = n_kv * hd, T = 37;
    for (DType kv_dt : {DType::F32, DType::F16}) {
        // Pools start with the same random contents; slots are distinct, some tokens are skipped (-1).
        std::vector<int32_t> slots(size_t(n_blocks * bs));
        std::iota(slots.begin(), slots.end(), 0);
        std::shuffle(slots.begin(), slots.end(), std::mt19937(61));
        slots.resize(size_t(T));
        slots[3] = -1, slots[20] = -1;
        const std::vector<float> k = random_floats(size_t(T * row), 62), v = random_floats(size_t(T * row), 63);
        const std::vector<float> pool_f = random_floats(size_t(n_blocks * bs * row), 64);
        std::vector<uint8_t> pool(size_t(n_blocks * bs * row) * (kv_dt == DType::F16 ? 2 : 4));
        if (kv_dt == DType::F16)
            for (size_t i = 0; i < pool_f.size(); i++) reinterpret_cast<uint16_t*>(pool.data())[i] = fp32_to_fp16(pool_f[i]);
        else std::memcpy(pool.data(), pool_f.data(), pool.size());
        auto run = [&](Backend& be) {
            DevTensor kp(be, kv_dt, {n_blocks, bs, n_kv, hd}, pool.data()), vp(be, kv_dt, {n_blocks, bs, n_kv, hd}, pool.data());
            DevTensor kt(be, DType::F32, {T, row}, k.data()), vt(be, DType::F32, {T, row}, v.data());
            DevTensor st(be, DType::I32, {T}, slots.data());
            AttentionBatch batch;
            batch.n_tokens = int(T);
            batch.slot_mapping = st.t;
            be.kv_write(KvLayerView{kp.t, vp.t, bs}, kt.t, vt.t, batch);
            EXPECT_TRUE(kp.guards_intact() && vp.guards_intact());
            std::vector<uint8_t> out = kp.all_bytes(), vout = vp.all_bytes();
            out.insert(out.end(), vout.begin(), vout.end());
            return out;
        };
        const std::vector<uint8_t> g = run(gpu()), c = run(cpu());
        const bool same = g == c;
        report().push_back({"kv_write", fmt::format("{} T={} 2 skipped (bytes equal)", dtype_name(kv_dt), T), 0, 0, 0,
                            same});
        EXPECT_TRUE(same) << "kv_write " << dtype_name(kv_dt) << ": pools differ from the CPU backend's";
    }
}

