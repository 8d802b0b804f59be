// Fused products at decode batch sizes above the GEMV range: weights stored back to back (as the model stores q/k/v
// and gate/up on a GPU) run as one GEMM whose columns are split (matmul_multi) or combined by the activation
// (gated_matmul). Checked against the double reference of each product, with the thresholds of the plain GEMM path;
// the same weights in separate allocations must give the same answers through the unfused path.
#include <fmt/format.h>

#include "backend_ops_util.h"

namespace osprey::backend::testing {

namespace {

double gemm_threshold(DType dt) { return dt == DType::F32 ? 1e-10 : dt == DType::BF16 ? 3e-5 : 1e-6; }

double act_ref(double g, Activation act) {
    if (act == Activation::Silu) return g / (1.0 + std::exp(-g));
    return 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
}

}  // namespace

TEST_F(BackendOps, FusedGemmOfBackToBackWeights) {
    for (DType dt : {DType::BF16, DType::F16, DType::F32, DType::Q8_0, DType::Q4_K}) {
        const int64_t K = is_quantized(dt) ? 4096 : 512;
        const int64_t ns[3] = {96, 37, 37};
        std::vector<std::vector<uint8_t>> w;
        std::vector<uint8_t> all;  // the three back to back
        for (int i = 0; i < 3; i++) {
            w.push_back(random_weights(dt, ns[i], K, uint32_t(300 + i)));
            all.insert(all.end(), w.back().begin(), w.back().end());
        }
        const int64_t n_all = ns[0] + ns[1] + ns[2];
        DevTensor joined(gpu(), dt, {n_all, K}, all.data());
        Tensor parts[3];
        size_t offset = 0;
        for (int i = 0; i < 3; i++) {
            parts[i] = Tensor(static_cast<char*>(joined.t.data) + offset, dt, {ns[i], K}, gpu().device());
            offset += w[size_t(i)].size();
        }
        std::vector<std::unique_ptr<DevTensor>> separate;
        for (int i = 0; i < 3; i++) separate.emplace_back(new DevTensor(gpu(), dt, {ns[i], K}, w[size_t(i)].data()));

        for (int64_t M : {int64_t(9), int64_t(64), int64_t(300)}) {
            const std::vector<float> x = random_floats(size_t(M * K), uint32_t(310 + M));
            DevTensor xg(gpu(), DType::F32, {M, K}, x.data());
            std::vector<std::vector<float>> ref(3);
            for (int i = 0; i < 3; i++) {
                ref[size_t(i)].resize(size_t(M * ns[i]));
                cpu::matmul_ref(ref[size_t(i)].data(), x.data(), dt, w[size_t(i)].data(), M, ns[i], K);
            }
            const std::string what = fmt::format("{} M={} K={}", dtype_name(dt), M, K);
            for (bool back_to_back : {true, false}) {
                std::vector<std::unique_ptr<DevTensor>> outs;
                for (int i = 0; i < 3; i++) outs.emplace_back(new DevTensor(gpu(), DType::F32, {M, ns[i]}));
                Tensor o[3] = {outs[0]->t, outs[1]->t, outs[2]->t};
                const Tensor ws[3] = {back_to_back ? parts[0] : separate[0]->t, back_to_back ? parts[1] : separate[1]->t,
                                      back_to_back ? parts[2] : separate[2]->t};
                gpu().matmul_multi(o, xg.t, ws);
                for (int i = 0; i < 3; i++)
                    expect_close("matmul_multi", fmt::format("{} part {}{}", what, i, back_to_back ? " fused" : ""),
                                 fetch(*outs[size_t(i)], "multi"), ref[size_t(i)], gemm_threshold(dt));
                for (Activation act : {Activation::Silu, Activation::GeluTanh}) {
                    DevTensor gate(gpu(), DType::F32, {M, ns[1]}), up(gpu(), DType::F32, {M, ns[1]});
                    gpu().gated_matmul(gate.t, up.t, xg.t, ws[1], ws[2], act);
                    std::vector<double> want(size_t(M * ns[1]));
                    for (size_t j = 0; j < want.size(); j++)
                        want[j] = act_ref(double(ref[1][j]), act) * double(ref[2][j]);
                    expect_close("gated_matmul",
                                 fmt::format("{} {}{}", what, act == Activation::Silu ? "silu" : "gelu",
                                             back_to_back ? " fused" : ""),
                                 fetch(gate, "gated"), want, gemm_threshold(dt));
                }
            }
        }
    }
}

}  // namespace osprey::backend::testing
