// Matmul on the CPU backend: every weight dtype against the double-precision reference on dequantized weights,
// SIMD against scalar, thread counts, and batch invariance (bit-identical rows whatever M and the row's tile).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

std::vector<float> run_matmul(Backend& be, const std::vector<float>& x, const std::vector<uint8_t>& w, DType dtype,
                              int64_t M, int64_t N, int64_t K) {
    std::vector<float> out(size_t(M * N), -12345.0f);
    Tensor to(out.data(), DType::F32, {M, N});
    Tensor tx(const_cast<float*>(x.data()), DType::F32, {M, K});
    Tensor tw(const_cast<uint8_t*>(w.data()), dtype, {N, K});
    be.matmul(to, tx, tw);
    return out;
}

// |sum_k x[m,k] w[n,k]| bound: sum_k |x||w| on dequantized weights (scale for the tolerances).
std::vector<double> abs_dot(const std::vector<float>& x, const std::vector<uint8_t>& w, DType dtype, int64_t M,
                            int64_t N, int64_t K) {
    std::vector<double> r(size_t(M * N));
    std::vector<float> wr(static_cast<size_t>(K));
    for (int64_t n = 0; n < N; n++) {
        cpu::dequantize_row_ref(dtype, w.data() + size_t(n) * dtype_row_bytes(dtype, K), wr.data(), K);
        for (int64_t m = 0; m < M; m++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += std::fabs(double(x[size_t(m * K + k)]) * wr[size_t(k)]);
            r[size_t(m * N + n)] = s;
        }
    }
    return r;
}

std::vector<std::string> isas() { return {"scalar", "avx2", "avx512"}; }

}  // namespace

TEST(CpuMatmul, SupportsEveryImplementedDtype) {
    auto be = make_cpu_backend(1);
    for (DType d : matmul_dtypes()) EXPECT_TRUE(be->supports_matmul(d)) << dtype_name(d);
    EXPECT_FALSE(be->supports_matmul(DType::I32));
    EXPECT_FALSE(be->supports_matmul(DType::Q8_K));
    EXPECT_TRUE(be->supports_kv_dtype(DType::F16));
    EXPECT_FALSE(be->supports_kv_dtype(DType::Q8_0));
}

TEST(CpuMatmul, MatchesReferenceForEveryDtypeAndIsa) {
    const int64_t M = 5, N = 37;
    for (const std::string& isa : isas()) {
        auto be = cpu::make_cpu_backend_with_isa(2, isa.c_str());
        for (DType dtype : matmul_dtypes()) {
            const int64_t K = test_k(dtype);
            const auto x = random_floats(size_t(M * K), 11);
            const auto w = random_weights(dtype, N, K, 22);
            const auto out = run_matmul(*be, x, w, dtype, M, N, K);
            std::vector<float> ref(size_t(M * N));
            cpu::matmul_ref(ref.data(), x.data(), dtype, w.data(), M, N, K);
            const auto mag = abs_dot(x, w, dtype, M, N, K);
            // Quantized activations (int8, per-block scale) cost up to ~1/254 of sum |x w| per term.
            const double rel = cpu::act_kind(dtype) == cpu::ActKind::F32 ? 1e-5 : 6e-3;
            for (size_t i = 0; i < out.size(); i++)
                ASSERT_NEAR(out[i], ref[i], rel * mag[i] + 1e-6) << be->name() << " " << dtype_name(dtype) << " i=" << i;
        }
    }
}

TEST(CpuMatmul, SimdMatchesScalar) {
    const int64_t M = 7, N = 29;
    auto scalar = cpu::make_cpu_backend_with_isa(1, "scalar");
    for (const std::string& isa : {std::string("avx2"), std::string("avx512")}) {
        auto simd = cpu::make_cpu_backend_with_isa(2, isa.c_str());
        for (DType dtype : matmul_dtypes()) {
            const int64_t K = test_k(dtype) * 2;
            const auto x = random_floats(size_t(M * K), 5, -3.0f, 3.0f);
            const auto w = random_weights(dtype, N, K, 6);
            const auto a = run_matmul(*scalar, x, w, dtype, M, N, K);
            const auto b = run_matmul(*simd, x, w, dtype, M, N, K);
            const auto mag = abs_dot(x, w, dtype, M, N, K);
            // Same quantized activations; only the f32 summation order differs.
            for (size_t i = 0; i < a.size(); i++)
                ASSERT_NEAR(a[i], b[i], 2e-6 * mag[i] + 1e-6) << simd->name() << " " << dtype_name(dtype) << " i=" << i;
        }
    }
}

TEST(CpuMatmul, LargeShapeMatchesReference) {
    // Big enough to take the threaded, tiled path (several row and column tiles).
    const int64_t M = 70, N = 300, K = 512;
    for (DType dtype : {DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q5_0, DType::F16}) {
        auto be = make_cpu_backend(2);
        const auto x = random_floats(size_t(M * K), 1);
        const auto w = random_weights(dtype, N, K, 2);
        const auto out = run_matmul(*be, x, w, dtype, M, N, K);
        std::vector<float> ref(size_t(M * N));
        cpu::matmul_ref(ref.data(), x.data(), dtype, w.data(), M, N, K);
        const auto mag = abs_dot(x, w, dtype, M, N, K);
        const double rel = cpu::act_kind(dtype) == cpu::ActKind::F32 ? 1e-5 : 6e-3;
        for (size_t i = 0; i < out.size(); i++)
            ASSERT_NEAR(out[i], ref[i], rel * mag[i] + 1e-6) << dtype_name(dtype) << " i=" << i;
    }
}

TEST(CpuMatmul, BatchInvariantBitIdentical) {
    // A row computed alone equals the same row inside batches of M = 1, 3, 8, 37, 64 at any offset, bit for bit,
    // for every ISA and thread count.
    const int64_t n_rows = 100, N = 67;
    for (const std::string& isa : isas()) {
        for (int threads : {1, 2}) {
            auto be = cpu::make_cpu_backend_with_isa(threads, isa.c_str());
            for (DType dtype : matmul_dtypes()) {
                const int64_t K = test_k(dtype);
                const auto x = random_floats(size_t(n_rows * K), 77, -2.0f, 2.0f);
                const auto w = random_weights(dtype, N, K, 78);
                std::vector<float> alone(size_t(n_rows * N));
                for (int64_t r = 0; r < n_rows; r++) {
                    std::vector<float> xr(x.begin() + r * K, x.begin() + (r + 1) * K);
                    const auto o = run_matmul(*be, xr, w, dtype, 1, N, K);
                    std::memcpy(alone.data() + r * N, o.data(), size_t(N) * 4);
                }
                for (int64_t M : {1, 3, 8, 37, 64}) {
                    for (int64_t off : {int64_t(0), int64_t(1), n_rows - M}) {
                        std::vector<float> xb(x.begin() + off * K, x.begin() + (off + M) * K);
                        const auto o = run_matmul(*be, xb, w, dtype, M, N, K);
                        ASSERT_EQ(std::memcmp(o.data(), alone.data() + off * N, size_t(M * N) * 4), 0)
                            << be->name() << " " << dtype_name(dtype) << " M=" << M << " off=" << off;
                    }
                }
            }
        }
    }
}
