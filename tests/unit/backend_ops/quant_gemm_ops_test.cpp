// The direct quantized tensor-core GEMM (backend/cuda/gemm_quant.cu) at decode batch sizes: every block type it
// handles, M on both sides of its tile sizes, N not a multiple of any tile, K of one stage, K of 56 stages (the
// kernel splits K for such narrow N) and, for 32-element blocks, K ending inside a stage. Checked against the double
// reference (cpu::matmul_ref) and the CPU backend with the thresholds of MatmulOps' f16 GEMM path, and against the
// dequantize-to-f16 + cuBLAS path it replaces (the same f16 operands: only the f32 summation order differs).
// OSPREY_QGEMM forces one path or the other for the duration of a check.
#include <fmt/format.h>

#include <cstdlib>
#include <string>

#include "backend/cpu/cpu_kernels.h"
#include "backend_ops_util.h"
#include "core/quant_blocks.h"

namespace osprey::backend::testing {

namespace {

// Sets OSPREY_QGEMM for its lifetime ("1": the direct kernel at every M, "0": dequantize + cuBLAS).
class QgemmMode {
  public:
    explicit QgemmMode(const char* v) {
        if (const char* e = std::getenv("OSPREY_QGEMM")) old_ = e, had_ = true;
        setenv("OSPREY_QGEMM", v, 1);
    }
    ~QgemmMode() {
        if (had_) setenv("OSPREY_QGEMM", old_.c_str(), 1);
        else unsetenv("OSPREY_QGEMM");
    }

  private:
    std::string old_;
    bool had_ = false;
};

const DType kQuantGemmTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

}  // namespace

TEST_F(BackendOps, QuantGemmMatchesReference) {
    struct Shape {
        int64_t N, K;
    };
    for (DType dt : kQuantGemmTypes) {
        std::vector<Shape> shapes = {{200, 256}, {75, 14336}};
        if (dtype_traits(dt).block_size == 32) shapes.push_back({45, 352});  // 11 blocks: the last stage is partial
        uint32_t seed = 500;
        for (const Shape& s : shapes) {
            const std::vector<uint8_t> w = random_weights(dt, s.N, s.K, seed++);
            DevTensor wg(gpu(), dt, {s.N, s.K}, w.data());
            DevTensor wc(cpu(), dt, {s.N, s.K}, w.data());
            for (int64_t M : {9, 16, 33, 64, 128, 257}) {
                const std::vector<float> x = random_floats(size_t(M * s.K), seed++);
                std::vector<float> ref(size_t(M * s.N));
                cpu::matmul_ref(ref.data(), x.data(), dt, w.data(), M, s.N, s.K);
                DevTensor xg(gpu(), DType::F32, {M, s.K}, x.data()), og(gpu(), DType::F32, {M, s.N});
                DevTensor old_out(gpu(), DType::F32, {M, s.N});
                DevTensor xc(cpu(), DType::F32, {M, s.K}, x.data()), oc(cpu(), DType::F32, {M, s.N});
                {
                    const QgemmMode mode("1");
                    gpu().matmul(og.t, xg.t, wg.t);
                }
                {
                    const QgemmMode mode("0");
                    gpu().matmul(old_out.t, xg.t, wg.t);
                }
                cpu().matmul(oc.t, xc.t, wc.t);
                const std::vector<float> got = fetch(og, "quant gemm");
                const std::string v = fmt::format("{} M={} N={} K={}", dtype_name(dt), M, s.N, s.K);
                // x rounded to f16 (2^-11 relative): NMSE ~1e-7 against the reference, as MatmulOps allows.
                expect_close("quant gemm vs ref", v, got, ref, 1e-6);
                expect_close("quant gemm vs cpu", v, got, fetch(oc, "cpu"), 1e-6);
                // The same f16 products summed in another order: ~1e-12 (a wrong weight bit would show ~1e-8).
                expect_close("quant gemm vs f16", v, got, fetch(old_out, "dequant + cublas"), 1e-9);
            }
        }
    }
}

// Wall time of the decode products of a Llama-3.1-8B layer at batch sizes above the GEMV: the direct kernel, the
// dequantize + cuBLAS path it replaces, and cuBLAS on bf16 weights of the same shape. Run on the GPU machine with
// test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*QuantGemmTiming*'
TEST_F(BackendOps, DISABLED_QuantGemmTiming) {
    Backend& be = gpu();
    struct Shape {
        const char* name;
        int64_t N, K;
    };
    const Shape shapes[] = {{"q/o 4096x4096", 4096, 4096},
                            {"k/v 1024x4096", 1024, 4096},
                            {"gate/up 14336x4096", 14336, 4096},
                            {"down 4096x14336", 4096, 14336},
                            {"lm_head 128256x4096", 128256, 4096}};
    // Random bits (fast at 128256 rows) with small positive scales: timing only.
    auto fill = [](std::vector<uint8_t>& v, uint64_t seed) {
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
        for (size_t i = 0; i + 8 <= v.size(); i += 8) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            std::memcpy(v.data() + i, &s, 8);
        }
    };
    // OSPREY_QGEMM_TIMING_QUICK=1: the first shape and Q4_K only (for a profiler run).
    const bool quick = std::getenv("OSPREY_QGEMM_TIMING_QUICK") != nullptr;
    for (const Shape& sh : shapes) {
        if (quick && &sh != &shapes[0]) break;
        std::vector<uint8_t> bf(size_t(sh.N * sh.K) * 2);
        fill(bf, 3);
        for (size_t i = 0; i < bf.size(); i += 2) bf[i + 1] = uint8_t((bf[i + 1] & 0x80) | 0x3C);  // |v| ~ 2^-7
        DevTensor wb(be, DType::BF16, {sh.N, sh.K}, bf.data());
        bf = {};
        for (DType dt : {DType::Q4_K, DType::Q6_K}) {
            if (quick && dt != DType::Q4_K) break;
            const size_t row_bytes = dtype_row_bytes(dt, sh.K), bb = size_t(dtype_traits(dt).block_bytes);
            std::vector<uint8_t> w(row_bytes * size_t(sh.N));
            fill(w, 5);
            const uint16_t scale = 0x1C00;  // fp16 2^-8
            for (size_t b = 0; b < w.size() / bb; b++) {
                uint8_t* blk = w.data() + b * bb;
                if (dt == DType::Q4_K) std::memcpy(blk, &scale, 2), std::memcpy(blk + 2, &scale, 2);
                else std::memcpy(blk + offsetof(BlockQ6_K, d), &scale, 2);
            }
            DevTensor wq(be, dt, {sh.N, sh.K}, w.data());
            for (int64_t M : {16, 64, 128, 256}) {
                const std::vector<float> x = random_floats(size_t(M * sh.K), 8);
                DevTensor xt(be, DType::F32, {M, sh.K}, x.data()), o(be, DType::F32, {M, sh.N});
                auto timed = [&](const Tensor& wt) { return time_us(be, 20, [&] { be.matmul(o.t, xt.t, wt); }, 3); };
                double t_new = 0, t_old = 0;
                std::string per_config;
                {
                    const QgemmMode mode("1");
                    t_new = timed(wq.t);
                    for (int c = 0; c < 8; c++) {  // each tile configuration (OSPREY_QGEMM_CONFIG), for tuning
                        setenv("OSPREY_QGEMM_CONFIG", std::to_string(c).c_str(), 1);
                        per_config += fmt::format(" {:.1f}", timed(wq.t));
                    }
                    unsetenv("OSPREY_QGEMM_CONFIG");
                }
                {
                    const QgemmMode mode("0");
                    t_old = timed(wq.t);
                }
                const double t_bf = timed(wb.t);
                const double flop = 2.0 * double(M) * double(sh.N) * double(sh.K);
                fmt::print("quant gemm {:<5} {:<20} M={:<4} direct {:8.1f} us ({:6.1f} TFLOP/s {:5.2f} TB/s)  dequant+cublas "
                           "{:8.1f} us  bf16 cublas {:8.1f} us  direct/bf16 {:.2f}  (configs 0..7:{} us)\n",
                           dtype_name(dt), sh.name, M, t_new, flop / t_new * 1e-6, double(w.size()) / t_new * 1e-6, t_old,
                           t_bf, t_new / t_bf, per_config);
                std::fflush(stdout);
            }
        }
    }
}

}  // namespace osprey::backend::testing
