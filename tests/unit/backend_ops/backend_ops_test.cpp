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

// The integer path of the small-batch kernel (gemv_int.cuh): Q8_0, Q4_0, Q4_1, Q4_K, Q6_K rows of whole 16-byte
// vectors. It quantizes x to int16 per 32-element block (d = amax / 32767, round to nearest), so out carries the
// rounding error of x: per element at most d / 2, variance d^2 / 12, i.e. NMSE ~ E[e^2] / E[x^2] ~ 2.3e-10 for the
// uniform test inputs whatever the weights. tests/golden/gemv_xquant_model.py models that rounding in numpy
// (worst 4.1e-10 over K = 2048..14336, weights with and without a mean): 1e-8 leaves 25x margin and still fails
// an error of one int8 term (~2e-5) or any wrong weight bit.
bool gemv_int_path(DType dt, int64_t K) {
    const bool int_type = dt == DType::Q8_0 || dt == DType::Q4_0 || dt == DType::Q4_1 || dt == DType::Q4_K ||
                          dt == DType::Q6_K;
    return int_type && dtype_row_bytes(dt, K) % 16 == 0;
}
constexpr double kGemvIntThreshold = 1e-8;
constexpr int64_t kGemvRows = 4;  // the CUDA backend's GEMV row limit for block types (kGemvMaxRows)

// NMSE thresholds against the double reference. M <= kGemvRows (M = 1 for float weights) runs the f32 matrix-vector
// kernels (f32 products and sums: ~1e-13) or the integer path above; larger M runs cuBLAS with x rounded to f16 (2^-11 relative: ~1e-7) or
// bf16 (2^-8: ~5e-6), and block types dequantized to f16; f32 weights use SGEMM.
double matmul_threshold(DType dt, int64_t M, int64_t K) {
    if (M <= kGemvRows && gemv_int_path(dt, K)) return kGemvIntThreshold;
    if (dt == DType::F32 || (M <= kGemvRows && (is_quantized(dt) || M == 1))) return 1e-10;  // GEMV (or SGEMM)
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
        // Llama-3-8B widths: rows of whole 16-byte vectors (the tiled block path), N not a multiple of the rows a
        // warp or a block takes, every small M.
        {37, 4096, {1, 2, 3, 4, 5, 6, 7, 8}},
        {45, 14336, {1, 2, 3, 4, 5, 6, 7, 8}},
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
                                              M > kGemvRows || (!is_quantized(dt) && M > 1) ? "cublas" : gemv_int_path(dt, s.K) ? "gemv int" : "gemv");
            const double thr = matmul_threshold(dt, M, s.K);
            expect_close("matmul vs ref", v, got, ref32, thr);
            // The CPU backend quantizes activations to 16 bits for block types (~1e-9), so allow 1e-6 there.
            expect_close("matmul vs cpu", v, got, cpu_out, std::max(thr, is_quantized(dt) ? 1e-6 : 1e-10));
        }
    }
}

// The integer path's x quantization at its edges: all-zero blocks (amax 0), a block whose amax is 1e6 times its
// other elements (they round to 0 or +-1 units: their error is bounded by amax / 65534, as the model says), tiny
// and huge magnitudes, and one row with every element equal to its block's amax in size.
TEST_F(BackendOps, GemvIntPathQuantizesEdgeCaseActivations) {
    for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q6_K}) {
        const int64_t N = 41, K = 4096, M = 5;
        ASSERT_TRUE(gemv_int_path(dt, K));
        const std::vector<uint8_t> w = random_weights(dt, N, K, 61);
        std::vector<float> x = random_floats(size_t(M * K), 62);
        for (int64_t i = 0; i < 256; i++) x[size_t(i)] = 0.0f;                     // row 0: zero blocks
        for (int64_t i = 0; i < K; i += 32) x[size_t(K + i)] = 1e6f;              // row 1: one large element per block
        for (int64_t i = 0; i < K; i++) x[size_t(2 * K + i)] *= 1e-30f;            // row 2: tiny (f32 normal) values
        for (int64_t i = 0; i < K; i++) x[size_t(3 * K + i)] *= 1e30f;             // row 3: huge values
        for (int64_t i = 0; i < K; i++) x[size_t(4 * K + i)] = (i % 3 == 0) ? -2.5f : 2.5f;  // row 4: +-amax only
        DevTensor wg(gpu(), dt, {N, K}, w.data());
        for (int64_t m = 0; m < M; m++) {  // one row per product: M <= kGemvRows takes the integer path
            DevTensor xg(gpu(), DType::F32, {1, K}, x.data() + m * K), og(gpu(), DType::F32, {1, N});
            gpu().matmul(og.t, xg.t, wg.t);
            const std::vector<float> row = fetch(og, "matmul");
            std::vector<float> ref(static_cast<size_t>(N));
            cpu::matmul_ref(ref.data(), x.data() + m * K, dt, w.data(), 1, N, K);
            // Row 4 is exactly representable (q = +-32767): only the f32 sums' rounding remains.
            expect_close("matmul int x edges", fmt::format("{} row {}", dtype_name(dt), m), row, ref,
                         m == 4 ? 1e-10 : kGemvIntThreshold);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(AllWeightTypes, MatmulOps, ::testing::ValuesIn(matmul_dtypes()),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST_F(BackendOps, GemvIsBatchInvariant) {
    // out[m, n] of the small-batch kernel must not depend on M (up to kGemvRows, where the quantized GEMM takes
    // over) or on the row's place in the batch. Float weights take the GEMV only at M = 1 (cuBLAS from two rows on),
    // so the claim covers the block types.
    for (DType dt : matmul_dtypes()) {
        if (!is_quantized(dt)) continue;
        const int64_t N = 67, K = 4096;
        const std::vector<uint8_t> w = random_weights(dt, N, K, 7);
        const std::vector<float> x = random_floats(size_t(8 * K), 8);
        DevTensor wg(gpu(), dt, {N, K}, w.data());
        std::vector<std::vector<float>> outs;
        for (int64_t M : {kGemvRows, int64_t(3), int64_t(2), int64_t(1)}) {
            // Row 0 of every run holds x's row 0.
            DevTensor xg(gpu(), DType::F32, {M, K}, x.data()), og(gpu(), DType::F32, {M, N});
            gpu().matmul(og.t, xg.t, wg.t);
            std::vector<float> o = og.get<float>();
            o.resize(size_t(N));
            outs.push_back(o);
        }
        for (size_t i = 1; i < outs.size(); i++) EXPECT_EQ(outs[0], outs[i]) << dtype_name(dt) << " run " << i;
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
    // n % 4 == 0: the 16-byte path; 1 and 1001: the scalar one.
    for (int64_t n : {int64_t(1), int64_t(1000), int64_t(1001), int64_t(256) * 1536}) {
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

// ---------------------------------------------------------------- async scheduling helpers

// copy_indexed_i32 feeds the ids one step drew into the next step's tokens; begin/finish_readback read ids back
// without waiting for work launched after them.
TEST_F(BackendOps, CopyIndexedI32AndReadback) {
    const std::vector<int32_t> src = random_ints(300, 0, 128256, 61);
    std::vector<int32_t> dst0(1000), di(256), si(256);
    for (size_t i = 0; i < dst0.size(); i++) dst0[i] = int32_t(i);
    for (size_t k = 0; k < di.size(); k++) di[k] = int32_t((k * 37) % 1000), si[k] = int32_t((k * 11) % 300);
    std::vector<int32_t> expect = dst0;
    for (size_t k = 0; k < di.size(); k++) expect[size_t(di[k])] = src[size_t(si[k])];
    DevTensor dst(gpu(), DType::I32, {1000}, dst0.data()), s(gpu(), DType::I32, {300}, src.data());
    DevTensor d_idx(gpu(), DType::I32, {256}, di.data()), s_idx(gpu(), DType::I32, {256}, si.data());
    gpu().copy_indexed_i32(dst.t, d_idx.t, s.t, s_idx.t);
    EXPECT_EQ(dst.get<int32_t>(), expect);
    EXPECT_TRUE(dst.guards_intact());

    // Two readbacks, each followed by more work on the stream that overwrites the source: each returns the bytes
    // of its own point in the stream.
    std::vector<int32_t> si2(256);
    for (size_t k = 0; k < si2.size(); k++) si2[k] = int32_t((k * 13 + 5) % 300);
    DevTensor s_idx2(gpu(), DType::I32, {256}, si2.data());
    const uint64_t t1 = gpu().begin_readback(dst.t.data, 1000 * 4);
    gpu().copy_indexed_i32(dst.t, d_idx.t, s.t, s_idx2.t);  // di are distinct: no two writes to one slot
    const uint64_t t2 = gpu().begin_readback(dst.t.data, 1000 * 4);
    std::vector<int32_t> after = expect;
    for (size_t k = 0; k < di.size(); k++) after[size_t(di[k])] = src[size_t(si2[k])];
    std::vector<int32_t> got1(1000), got2(1000);
    gpu().finish_readback(t1, got1.data());
    gpu().finish_readback(t2, got2.data());
    EXPECT_EQ(got1, expect);
    EXPECT_EQ(got2, after);
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


// The residual step fused: x += delta (written back), out = rms_norm(x) * w; against the CPU backend's
// add + rms_norm, both for rows that take the register path (d % 4 == 0, <= 8192) and the generic one.
TEST_F(BackendOps, AddRmsNorm) {
    struct Case {
        int64_t rows, d;
    };
    for (const Case c : {Case{1, 64}, Case{7, 77}, Case{1, 4096}, Case{256, 4096}, Case{3, 8192}, Case{2, 10240}}) {
        const std::vector<float> x = random_floats(size_t(c.rows * c.d), 23, -3, 3);
        const std::vector<float> dl = random_floats(size_t(c.rows * c.d), 24, -1, 1);
        const std::vector<float> w = random_floats(size_t(c.d), 25);
        DevTensor xg(gpu(), DType::F32, {c.rows, c.d}, x.data()), xc(cpu(), DType::F32, {c.rows, c.d}, x.data());
        DevTensor dg(gpu(), DType::F32, {c.rows, c.d}, dl.data()), dc(cpu(), DType::F32, {c.rows, c.d}, dl.data());
        DevTensor wg(gpu(), DType::F32, {c.d}, w.data()), wc(cpu(), DType::F32, {c.d}, w.data());
        DevTensor og(gpu(), DType::F32, {c.rows, c.d}), oc(cpu(), DType::F32, {c.rows, c.d});
        gpu().add_rms_norm(xg.t, dg.t, og.t, wg.t, 1e-6f);
        cpu().add(xc.t, xc.t, dc.t);
        cpu().rms_norm(oc.t, xc.t, wc.t, 1e-6f);
        const std::string what = fmt::format("rows={} d={}", c.rows, c.d);
        expect_close("add_rms_norm (x)", what, fetch(xg, "x"), fetch(xc, "x cpu"), 0.0);
        expect_close("add_rms_norm (out)", what, fetch(og, "out"), fetch(oc, "out cpu"), 1e-12);
    }
}

// RoPE on q and k then the KV write, fused: against the CPU backend's rope, rope, kv_write.
TEST_F(BackendOps, RopeKvWrite) {
    const int bs = 16, n_blocks = 8, n_q = 8, n_kv = 2;
    for (int hd : {64, 128}) {
        for (bool neox : {true, false}) {
            for (DType kv_dt : {DType::F32, DType::F16}) {
                const int64_t T = 37, row = int64_t(n_kv) * hd;
                std::vector<int32_t> slots(size_t(n_blocks * bs));
                std::iota(slots.begin(), slots.end(), 0);
                std::shuffle(slots.begin(), slots.end(), std::mt19937(71));
                slots.resize(size_t(T));
                slots[5] = -1;
                std::vector<int32_t> pos = random_ints(size_t(T), 0, 32767, 72);
                std::vector<float> inv(size_t(hd / 2));
                for (int i = 0; i < hd / 2; i++) inv[size_t(i)] = std::pow(500000.0f, -2.0f * float(i) / float(hd));
                const std::vector<float> q = random_floats(size_t(T * n_q * hd), 73), k = random_floats(size_t(T * row), 74),
                                         v = random_floats(size_t(T * row), 75);
                const size_t pool_bytes = size_t(n_blocks * bs * row) * (kv_dt == DType::F16 ? 2 : 4);
                const std::vector<uint8_t> pool(pool_bytes, 0);
                auto run = [&](Backend& be, bool fused) {
                    DevTensor kp(be, kv_dt, {n_blocks, bs, n_kv, hd}, pool.data()), vp(be, kv_dt, {n_blocks, bs, n_kv, hd}, pool.data());
                    DevTensor qt(be, DType::F32, {T, int64_t(n_q) * hd}, q.data()), kt(be, DType::F32, {T, row}, k.data()),
                        vt(be, DType::F32, {T, row}, v.data());
                    DevTensor st(be, DType::I32, {T}, slots.data()), pt(be, DType::I32, {T}, pos.data());
                    DevTensor ft(be, DType::F32, {hd / 2}, inv.data());
                    AttentionBatch batch;
                    batch.n_tokens = int(T);
                    batch.slot_mapping = st.t;
                    batch.positions = pt.t;
                    const RopeParams rq{n_q, hd, hd, neox}, rk{n_kv, hd, hd, neox};
                    const KvLayerView kv{kp.t, vp.t, bs};
                    if (fused) {
                        be.rope_kv_write(qt.t, kt.t, vt.t, ft.t, rq, rk, kv, batch);
                    } else {
                        be.rope(qt.t, pt.t, ft.t, rq);
                        be.rope(kt.t, pt.t, ft.t, rk);
                        be.kv_write(kv, kt.t, vt.t, batch);
                    }
                    std::vector<uint8_t> bytes = kp.all_bytes(), vb = vp.all_bytes();
                    bytes.insert(bytes.end(), vb.begin(), vb.end());
                    return std::make_pair(fetch(qt, "q"), bytes);
                };
                const auto g = run(gpu(), true), c = run(cpu(), false);
                const std::string what = fmt::format("{} hd={} neox={}", dtype_name(kv_dt), hd, neox);
                expect_close("rope_kv_write (q)", what, g.first, c.first, 1e-12);
                // Pools as floats (f16 entries widened): the rotation may round differently by an ulp (fma), which
                // an f16 store can turn into one f16 ulp, so f16 pools get the f16-rounding threshold.
                auto as_floats = [&](const std::vector<uint8_t>& bytes) {
                    const size_t n = bytes.size() / (kv_dt == DType::F16 ? 2 : 4);
                    std::vector<float> f(n);
                    for (size_t i = 0; i < n; i++) {
                        if (kv_dt == DType::F16) {
                            uint16_t h;
                            std::memcpy(&h, bytes.data() + 2 * i, 2);
                            f[i] = fp16_to_fp32(h);
                        } else {
                            std::memcpy(&f[i], bytes.data() + 4 * i, 4);
                        }
                    }
                    return f;
                };
                expect_close("rope_kv_write (pool)", what, as_floats(g.second), as_floats(c.second),
                             kv_dt == DType::F16 ? 1e-7 : 1e-12);
            }
        }
    }
}

namespace {

// Three weights (dtypes dts, rows ns, random with seeds seed, seed + 1, seed + 2) against x [M, K] on the device:
// matmul_multi's outputs must equal each weight's own matmul bit for bit. The weights and the separate outputs
// are left in wg and single for further checks.
void expect_multi_equals_single(Backend& gpu, const DType (&dts)[3], const int64_t (&ns)[3], const DevTensor& xg,
                                int64_t M, int64_t K, uint32_t seed, const std::string& what,
                                std::vector<std::unique_ptr<DevTensor>>& wg,
                                std::vector<std::unique_ptr<DevTensor>>& single) {
    std::vector<std::unique_ptr<DevTensor>> multi;
    for (int i = 0; i < 3; i++) {
        const std::vector<uint8_t> w = random_weights(dts[i], ns[i], K, seed + uint32_t(i));
        wg.emplace_back(new DevTensor(gpu, dts[i], {ns[i], K}, w.data()));
        multi.emplace_back(new DevTensor(gpu, DType::F32, {M, ns[i]}));
        single.emplace_back(new DevTensor(gpu, DType::F32, {M, ns[i]}));
    }
    Tensor outs[3] = {multi[0]->t, multi[1]->t, multi[2]->t};
    const Tensor ws[3] = {wg[0]->t, wg[1]->t, wg[2]->t};
    gpu.matmul_multi(outs, xg.t, ws);
    for (int i = 0; i < 3; i++) gpu.matmul(single[size_t(i)]->t, xg.t, wg[size_t(i)]->t);
    for (int i = 0; i < 3; i++)
        expect_close("matmul_multi", fmt::format("{} part {}", what, i), fetch(*multi[size_t(i)], "multi"),
                     fetch(*single[size_t(i)], "single"), 0.0);
}

}  // namespace

// One launch for several weights (q/k/v) and the gate/up pair with its activation: bit-identical to the separate
// GPU ops (the same warp reduction per output), for plain and block dtypes and every small-M row group.
TEST_F(BackendOps, GemvMultiAndGatedEqualSeparateOps) {
    // K = 512 takes the per-warp row path for Q6_K (rows of 420 bytes), K = 4096 the tiled path of every block type;
    // 37 rows: not a multiple of the rows a warp takes.
    for (DType dt : matmul_dtypes()) {
        const int64_t K = is_quantized(dt) ? 4096 : 512;
        for (int64_t M : {int64_t(1), int64_t(2), int64_t(3), kGemvRows}) {
            const int64_t ns[3] = {96, 37, 37};
            const DType dts[3] = {dt, dt, dt};
            const std::vector<float> x = random_floats(size_t(M * K), 84);
            DevTensor xg(gpu(), DType::F32, {M, K}, x.data());
            const std::string what = fmt::format("{} M={}", dtype_name(dt), M);
            std::vector<std::unique_ptr<DevTensor>> wg, single;
            expect_multi_equals_single(gpu(), dts, ns, xg, M, K, 80, what, wg, single);
            for (Activation act : {Activation::Silu, Activation::GeluTanh}) {
                DevTensor gate(gpu(), DType::F32, {M, ns[1]}), up(gpu(), DType::F32, {M, ns[1]});
                gpu().gated_matmul(gate.t, up.t, xg.t, wg[1]->t, wg[2]->t, act);
                DevTensor ref(gpu(), DType::F32, {M, ns[1]});
                gpu().gated_activation(ref.t, single[1]->t, single[2]->t, act);
                expect_close("gated_matmul", what + (act == Activation::Silu ? " silu" : " gelu"), fetch(gate, "gated"),
                             fetch(ref, "separate"), 0.0);
            }
        }
    }
}

// q/k/v of mixed dtypes (a Q4_K_M file: Q4_K q and k, Q6_K v; one launch per dtype, x quantized once for both):
// each output bit-identical to its weight's own product.
TEST_F(BackendOps, GemvMultiOfMixedDtypesEqualsSeparateOps) {
    const int64_t K = 4096, ns[3] = {96, 37, 37};
    const DType dts[3] = {DType::Q4_K, DType::Q4_K, DType::Q6_K};
    for (int64_t M : {int64_t(1), int64_t(3), kGemvRows}) {
        const std::vector<float> x = random_floats(size_t(M * K), 85);
        DevTensor xg(gpu(), DType::F32, {M, K}, x.data());
        std::vector<std::unique_ptr<DevTensor>> wg, single;
        expect_multi_equals_single(gpu(), dts, ns, xg, M, K, 90, fmt::format("Q4_K/Q4_K/Q6_K M={}", M), wg, single);
    }
}

// Greedy decoding on the device: the first maximum of each row, as the host sampler picks it (ties included).
TEST_F(BackendOps, ArgmaxRowsPicksTheFirstMaximum) {
    for (int64_t V : {int64_t(1), int64_t(1000), int64_t(128256)}) {
        const int64_t R = 37;
        std::vector<float> l = random_floats(size_t(R * V), 91, -5, 5);
        if (V > 10) {
            l[size_t(3 * V + 7)] = 9.0f, l[size_t(3 * V + 9)] = 9.0f;  // a tie: index 7 wins
            l[size_t(5 * V + V - 1)] = 9.5f;                            // the last column
        }
        DevTensor lg(gpu(), DType::F32, {R, V}, l.data()), ig(gpu(), DType::I32, {R});
        DevTensor lc(cpu(), DType::F32, {R, V}, l.data()), ic(cpu(), DType::I32, {R});
        gpu().argmax_rows(ig.t, lg.t);
        cpu().argmax_rows(ic.t, lc.t);
        const std::vector<int32_t> g = ig.get<int32_t>(), c = ic.get<int32_t>();
        EXPECT_EQ(g, c) << "V=" << V;
        for (int64_t r = 0; r < R; r++) {
            const float* row = l.data() + r * V;
            EXPECT_EQ(c[size_t(r)], int32_t(std::max_element(row, row + V) - row)) << "row " << r;
        }
        report().push_back({"argmax_rows", fmt::format("R={} V={} (ids equal)", R, V), 0, 0, 0, g == c});
    }
}
