// Two-term activation quantization (QuantAct): every ISA's quantizer is bit-identical to the scalar one, the
// terms reconstruct x to ~16-bit precision, and matmul with them is within that precision of the f64 reference.
#include <gtest/gtest.h>

#include <cmath>
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

struct ActBuf {
    std::vector<int8_t> qs, ql;
    std::vector<float> d, s;
    std::vector<int16_t> bs, bl;
    cpu::QuantAct a;
    ActBuf(cpu::ActKind kind, int64_t rows, int64_t k) {
        const int64_t blk = kind == cpu::ActKind::Q8_32 ? 32 : 256;
        qs.assign(size_t(rows * k), 0), ql.assign(size_t(rows * k), 0);
        d.assign(size_t(rows * k / blk), 0), s.assign(size_t(rows * k / 32), 0);
        bs.assign(size_t(rows * k / 16), 0), bl.assign(size_t(rows * k / 16), 0);
        a.k = k;
        a.qs = qs.data(), a.ql = ql.data(), a.d = d.data(), a.s = s.data(), a.bsums = bs.data(), a.bsums_lo = bl.data();
        a.qs_stride = k, a.d_stride = k / blk, a.s_stride = k / 32, a.bsums_stride = k / 16;
    }
};

std::vector<float> test_rows(int64_t rows, int64_t k) {
    auto x = random_floats(size_t(rows * k), 31, -4.0f, 4.0f);
    for (int64_t i = 0; i < 32; i++) x[size_t(i)] = 0.0f;                 // an all-zero block
    for (int64_t i = 32; i < 64; i++) x[size_t(i)] = float(i % 3) * 1e-3f;  // a block of few distinct values
    x[100] = 1000.0f;                                                     // a large outlier
    return x;
}

}  // namespace

TEST(QuantAct, SimdQuantizersBitIdenticalToScalar) {
    const int64_t rows = 5, k = 1024;
    const auto x = test_rows(rows, k);
    const cpu::CpuKernels scalar = cpu::select_kernels("scalar");
    for (const char* isa : {"avx2", "avx512"}) {
        const cpu::CpuKernels simd = cpu::select_kernels(isa);
        for (cpu::ActKind kind : {cpu::ActKind::Q8_32, cpu::ActKind::Q8_256}) {
            ActBuf r(kind, rows, k), t(kind, rows, k);
            for (int64_t m = 0; m < rows; m++) {
                (kind == cpu::ActKind::Q8_32 ? scalar.quantize_q8_32 : scalar.quantize_q8_256)(x.data() + m * k, r.a, m);
                (kind == cpu::ActKind::Q8_32 ? simd.quantize_q8_32 : simd.quantize_q8_256)(x.data() + m * k, t.a, m);
            }
            EXPECT_EQ(r.qs, t.qs) << isa;
            EXPECT_EQ(r.ql, t.ql) << isa;
            EXPECT_EQ(std::memcmp(r.d.data(), t.d.data(), r.d.size() * 4), 0) << isa;
            if (kind == cpu::ActKind::Q8_32) {
                EXPECT_EQ(std::memcmp(r.s.data(), t.s.data(), r.s.size() * 4), 0) << isa;
            } else {
                EXPECT_EQ(r.bs, t.bs) << isa;
                EXPECT_EQ(r.bl, t.bl) << isa;
            }
        }
    }
}

TEST(QuantAct, TwoTermsReconstructToSixteenBits) {
    // Independent check of the layout: x ~= d * (256 hi + lo) within 1.5 d (lo saturates at +-127; plus f32
    // rounding) of each element,
    // where 256 d = amax / 127 over the block; s and the bsums are the stated sums.
    const int64_t k = 512;
    const auto x = test_rows(1, k);
    const cpu::CpuKernels sk = cpu::select_kernels("scalar");
    for (cpu::ActKind kind : {cpu::ActKind::Q8_32, cpu::ActKind::Q8_256}) {
        const int64_t blk = kind == cpu::ActKind::Q8_32 ? 32 : 256;
        ActBuf t(kind, 1, k);
        (kind == cpu::ActKind::Q8_32 ? sk.quantize_q8_32 : sk.quantize_q8_256)(x.data(), t.a, 0);
        for (int64_t b = 0; b < k / blk; b++) {
            double amax = 0;
            for (int64_t j = 0; j < blk; j++) amax = std::max(amax, std::fabs(double(x[size_t(b * blk + j)])));
            ASSERT_NEAR(t.d[size_t(b)], amax / 127.0 / 256.0, 1e-6 * amax);
            long sum = 0;
            for (int64_t j = 0; j < blk; j++) {
                const size_t i = size_t(b * blk + j);
                const double v = double(t.d[size_t(b)]) * (256.0 * t.qs[i] + t.ql[i]);
                ASSERT_NEAR(v, x[i], 1.5001 * t.d[size_t(b)] + 1e-6 * amax) << "kind " << int(kind) << " i=" << i;
                sum += 256 * t.qs[i] + t.ql[i];
            }
            if (kind == cpu::ActKind::Q8_32) ASSERT_FLOAT_EQ(t.s[size_t(b)], t.d[size_t(b)] * float(sum));
        }
        if (kind == cpu::ActKind::Q8_256)
            for (int64_t g = 0; g < k / 16; g++) {
                int sh = 0, sl = 0;
                for (int64_t j = 0; j < 16; j++) sh += t.qs[size_t(16 * g + j)], sl += t.ql[size_t(16 * g + j)];
                ASSERT_EQ(t.bs[size_t(g)], sh);
                ASSERT_EQ(t.bl[size_t(g)], sl);
            }
    }
}

TEST(QuantAct, QuantizedMatmulIsSixteenBitAccurate) {
    // With ~16-bit activations the only sizeable error left is f32 rounding: far below one int8 term's ~1/254.
    const int64_t M = 6, N = 40;
    for (const char* isa : {"scalar", "avx2", "avx512"}) {
        auto be = cpu::make_cpu_backend_with_isa(2, isa);
        for (DType dtype : matmul_dtypes()) {
            if (cpu::act_kind(dtype) == cpu::ActKind::F32) continue;
            const int64_t K = test_k(dtype) * 2;
            const auto x = random_floats(size_t(M * K), 3, -2.0f, 2.0f);
            const auto w = random_weights(dtype, N, K, 4);
            std::vector<float> out(size_t(M * N)), ref(size_t(M * N));
            Tensor to(out.data(), DType::F32, {M, N}), tx(const_cast<float*>(x.data()), DType::F32, {M, K});
            Tensor tw(const_cast<uint8_t*>(w.data()), dtype, {N, K});
            be->matmul(to, tx, tw);
            cpu::matmul_ref(ref.data(), x.data(), dtype, w.data(), M, N, K);
            std::vector<float> wr(static_cast<size_t>(K));
            for (int64_t n = 0; n < N; n++) {
                cpu::dequantize_row_ref(dtype, w.data() + size_t(n) * dtype_row_bytes(dtype, K), wr.data(), K);
                for (int64_t m = 0; m < M; m++) {
                    double mag = 0;
                    for (int64_t kk = 0; kk < K; kk++) mag += std::fabs(double(x[size_t(m * K + kk)]) * wr[size_t(kk)]);
                    ASSERT_NEAR(out[size_t(m * N + n)], ref[size_t(m * N + n)], 4e-5 * mag + 1e-6)
                        << isa << " " << dtype_name(dtype) << " m=" << m << " n=" << n;
                }
            }
        }
    }
}
