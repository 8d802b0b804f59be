// Column invariance of the matmul kernels: out[m, n] is bit-identical whatever weight rows surround row n (the
// tile column it falls in), the thread count and M; checked against a single-row, single-column product.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

namespace {

std::vector<float> mm(Backend& be, const float* x, const uint8_t* w, DType dtype, int64_t M, int64_t N, int64_t K) {
    std::vector<float> out(size_t(M * N));
    Tensor to(out.data(), DType::F32, {M, N});
    Tensor tx(const_cast<float*>(x), DType::F32, {M, K});
    Tensor tw(const_cast<uint8_t*>(w), dtype, {N, K});
    be.matmul(to, tx, tw);
    return out;
}

}  // namespace

TEST(CpuMatmulTiles, ColumnAndRowPositionInvariant) {
    const int64_t M = 11, N = 23;
    for (const char* isa : {"scalar", "avx2", "avx512"}) {
        for (int threads : {1, 2}) {
            auto be = cpu::make_cpu_backend_with_isa(threads, isa);
            for (DType dtype : matmul_dtypes()) {
                // K with a 16-multiple part, an 8-step and a scalar tail for the float types.
                const int64_t K = cpu::act_kind(dtype) == cpu::ActKind::F32 ? 16 * 40 + 8 + 3 : test_k(dtype);
                const auto x = random_floats(size_t(M * K), 5, -2.0f, 2.0f);
                const auto w = random_weights(dtype, N, K, 6);
                const size_t rb = dtype_row_bytes(dtype, K);
                const auto full = mm(*be, x.data(), w.data(), dtype, M, N, K);
                for (int64_t n0 : {int64_t(0), int64_t(1), int64_t(5), int64_t(22)}) {
                    for (int64_t nn : {int64_t(1), int64_t(3), N - n0}) {
                        if (n0 + nn > N) continue;
                        const auto part = mm(*be, x.data(), w.data() + size_t(n0) * rb, dtype, M, nn, K);
                        for (int64_t m = 0; m < M; m++)
                            ASSERT_EQ(std::memcmp(part.data() + m * nn, full.data() + m * N + n0, size_t(nn) * 4), 0)
                                << be->name() << " " << dtype_name(dtype) << " n0=" << n0 << " nn=" << nn << " m=" << m;
                    }
                }
                for (int64_t m = 0; m < M; m++) {  // one row, one column at a time
                    for (int64_t n = 0; n < N; n += 7) {
                        const auto one = mm(*be, x.data() + m * K, w.data() + size_t(n) * rb, dtype, 1, 1, K);
                        ASSERT_EQ(std::memcmp(one.data(), full.data() + m * N + n, 4), 0)
                            << be->name() << " " << dtype_name(dtype) << " m=" << m << " n=" << n;
                    }
                }
            }
        }
    }
}

// matmul_multi (q/k/v, gate/up against one x) gives exactly what separate matmuls give, for mixed dtypes too.
TEST(CpuMatmulTiles, MultiWeightEqualsSeparateMatmuls) {
    const int64_t K = 256 * 3;
    for (int threads : {1, 2}) {
        auto be = cpu::make_cpu_backend_with_isa(threads, nullptr);
        for (int64_t M : {int64_t(1), int64_t(5), int64_t(37)}) {
            const auto x = random_floats(size_t(M * K), 9, -2.0f, 2.0f);
            const DType dtypes[3] = {DType::Q4_1, DType::Q8_0, DType::Q6_K};
            const int64_t ns[3] = {96, 33, 64};
            std::vector<std::vector<uint8_t>> ws;
            std::vector<std::vector<float>> outs;
            std::vector<Tensor> tw, to;
            for (int i = 0; i < 3; i++) {
                ws.push_back(random_weights(dtypes[i], ns[i], K, 20 + i));
                outs.emplace_back(size_t(M * ns[i]), -1.0f);
            }
            for (int i = 0; i < 3; i++) {
                tw.push_back(Tensor(ws[size_t(i)].data(), dtypes[i], {ns[i], K}));
                to.push_back(Tensor(outs[size_t(i)].data(), DType::F32, {M, ns[i]}));
            }
            Tensor tx(const_cast<float*>(x.data()), DType::F32, {M, K});
            be->matmul_multi(to, tx, tw);
            for (int i = 0; i < 3; i++) {
                const auto one = mm(*be, x.data(), ws[size_t(i)].data(), dtypes[i], M, ns[i], K);
                ASSERT_EQ(std::memcmp(one.data(), outs[size_t(i)].data(), one.size() * 4), 0)
                    << be->name() << " " << dtype_name(dtypes[i]) << " M=" << M;
            }
        }
    }
}
