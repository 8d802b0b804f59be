// F16 / BF16 / Q8_0 matrices prepared into panels (Backend::prepare_matrix, CPU panel kernels): the packing layout, agreement with
// the double reference and with the unprepared path, bit-identical rows whatever M / offset / threads, and mixed
// multi-weight and gated products.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/half.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

bool have_panels() { return cpu::select_kernels().panel_f16 != nullptr; }

std::vector<float> product(Backend& be, const std::vector<float>& x, const std::vector<uint8_t>& w, DType dtype,
                           int64_t M, int64_t N, int64_t K, bool prepare) {
    std::vector<float> out(size_t(M * N), -12345.0f);
    Tensor to(out.data(), DType::F32, {M, N});
    Tensor tx(const_cast<float*>(x.data()), DType::F32, {M, K});
    Tensor tw(const_cast<uint8_t*>(w.data()), dtype, {N, K});
    if (prepare) be.prepare_matrix(tw);
    be.matmul(to, tx, tw);
    return out;
}

}  // namespace

TEST(CpuPanels, PackLayout) {
    const int64_t N = 20, K = 3;
    std::vector<uint16_t> w(size_t(N * K));
    for (size_t i = 0; i < w.size(); i++) w[i] = uint16_t(i + 1);
    std::vector<uint16_t> p(size_t(cpu::panel_bytes(DType::F16, N, K) / 2), 0xFFFF);
    ASSERT_EQ(p.size(), size_t(32 * K));
    cpu::pack_16bit_panels(w.data(), N, K, p.data());
    for (int64_t n = 0; n < 32; n++)
        for (int64_t k = 0; k < K; k++)
            EXPECT_EQ(p[size_t(((n / 16) * K + k) * 16 + n % 16)], n < N ? w[size_t(n * K + k)] : 0) << n << " " << k;
}

TEST(CpuPanels, PreparedMatricesMatchReferenceAndUnprepared) {
    if (!have_panels()) GTEST_SKIP() << "no AVX-512 panel kernel on this CPU";
    struct Shape { int64_t M, N, K; };
    for (const DType dt : {DType::F16, DType::BF16, DType::Q8_0})
    for (const Shape s : {Shape{1, 37, 64}, Shape{5, 200, 128}, Shape{9, 16, 32}, Shape{70, 300, 512}, Shape{8, 49, 96}}) {
        auto plain = make_cpu_backend(2);
        auto panels = make_cpu_backend(2);
        const auto x = random_floats(size_t(s.M * s.K), 31, -2.0f, 2.0f);
        const auto w = random_weights(dt, s.N, s.K, 32);
        const auto a = product(*panels, x, w, dt, s.M, s.N, s.K, true);
        const auto b = product(*plain, x, w, dt, s.M, s.N, s.K, false);
        std::vector<float> ref(size_t(s.M * s.N));
        cpu::matmul_ref(ref.data(), x.data(), dt, w.data(), s.M, s.N, s.K);
        std::vector<float> wr(size_t(s.K));
        for (int64_t n = 0; n < s.N; n++) {
            cpu::dequantize_row_ref(dt, w.data() + size_t(n) * dtype_row_bytes(dt, s.K), wr.data(), s.K);
            for (int64_t m = 0; m < s.M; m++) {
                double mag = 0;
                for (int64_t k = 0; k < s.K; k++) mag += std::fabs(double(x[size_t(m * s.K + k)]) * wr[size_t(k)]);
                const size_t i = size_t(m * s.N + n);
                ASSERT_NEAR(a[i], ref[i], 1e-5 * mag + 1e-6) << dtype_name(dt) << " " << s.M << "x" << s.N << "x" << s.K << " i=" << i;
                // Unprepared Q8_0 quantizes x (two int8 terms, ~1e-5 of the magnitude); 16-bit weights only reorder.
                const double tol = dt == DType::Q8_0 ? 6e-5 : 2e-6;
                ASSERT_NEAR(a[i], b[i], tol * mag + 1e-6) << dtype_name(dt) << " " << s.M << "x" << s.N << "x" << s.K << " i=" << i;
            }
        }
        // A product is a different computation from the row kernels' (sum order), so a broken packing could not
        // hide behind the unprepared path: at least one output must differ in its last bits.
        if (s.K >= 100) EXPECT_NE(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << dtype_name(dt) << ": panels not used";
    }
}

TEST(CpuPanels, PreparedRowsAreBatchInvariant) {
    if (!have_panels()) GTEST_SKIP() << "no AVX-512 panel kernel on this CPU";
    const int64_t n_rows = 80, N = 100, K = 96;
    const auto x = random_floats(size_t(n_rows * K), 41, -2.0f, 2.0f);
    for (const DType dt : {DType::F16, DType::BF16, DType::Q8_0})
    for (int threads : {1, 2}) {
        const auto w = random_weights(dt, N, K, 42);
        auto be = make_cpu_backend(threads);
        std::vector<float> alone(size_t(n_rows * N));
        for (int64_t r = 0; r < n_rows; r++) {
            std::vector<float> xr(x.begin() + r * K, x.begin() + (r + 1) * K);
            const auto o = product(*be, xr, w, dt, 1, N, K, true);
            std::memcpy(alone.data() + r * N, o.data(), size_t(N) * 4);
        }
        for (int64_t M : {1, 3, 8, 9, 37, 64}) {
            for (int64_t off : {int64_t(0), int64_t(5), n_rows - M}) {
                std::vector<float> xb(x.begin() + off * K, x.begin() + (off + M) * K);
                const auto o = product(*be, xb, w, dt, M, N, K, true);
                ASSERT_EQ(std::memcmp(o.data(), alone.data() + off * N, size_t(M * N) * 4), 0)
                    << dtype_name(dt) << " threads " << threads << " M=" << M << " off=" << off;
            }
        }
    }
}

TEST(CpuPanels, MultiAndGatedProductsWithPreparedWeights) {
    if (!have_panels()) GTEST_SKIP() << "no AVX-512 panel kernel on this CPU";
    const int64_t M = 11, K = 64, N0 = 40, N1 = 24;
    auto be = make_cpu_backend(2);
    const auto x = random_floats(size_t(M * K), 51);
    const auto w0 = random_weights(DType::F16, N0, K, 52);
    const auto w1 = random_weights(DType::Q8_0, N1, K, 53);
    const auto w2 = random_weights(DType::F16, N0, K, 54);
    Tensor tx(const_cast<float*>(x.data()), DType::F32, {M, K});
    Tensor t0(const_cast<uint8_t*>(w0.data()), DType::F16, {N0, K});
    Tensor t1(const_cast<uint8_t*>(w1.data()), DType::Q8_0, {N1, K});
    Tensor t2(const_cast<uint8_t*>(w2.data()), DType::F16, {N0, K});
    be->prepare_matrix(t0);
    be->prepare_matrix(t1);  // not an F16 matrix: no panels, the row kernels as before
    be->prepare_matrix(t2);
    const auto s0 = product(*be, x, w0, DType::F16, M, N0, K, false);  // same data: the prepared panels
    const auto s1 = product(*be, x, w1, DType::Q8_0, M, N1, K, false);
    const auto s2 = product(*be, x, w2, DType::F16, M, N0, K, false);
    std::vector<float> o0(size_t(M * N0)), o1(size_t(M * N1));
    Tensor outs[2] = {Tensor(o0.data(), DType::F32, {M, N0}), Tensor(o1.data(), DType::F32, {M, N1})};
    const Tensor ws[2] = {t0, t1};
    be->matmul_multi(outs, tx, ws);
    EXPECT_EQ(std::memcmp(o0.data(), s0.data(), o0.size() * 4), 0);
    EXPECT_EQ(std::memcmp(o1.data(), s1.data(), o1.size() * 4), 0);
    std::vector<float> gate(size_t(M * N0)), up(size_t(M * N0));
    be->gated_matmul(Tensor(gate.data(), DType::F32, {M, N0}), Tensor(up.data(), DType::F32, {M, N0}), tx, t0, t2,
                     Activation::Silu);
    for (size_t i = 0; i < gate.size(); i++) {
        const float g = s0[i];
        ASSERT_NEAR(gate[i], g / (1.0f + std::exp(-g)) * s2[i], 1e-5f * (1.0f + std::fabs(gate[i]))) << i;
    }
}
