// Fused products at decode batch sizes above the GEMV range: weights stored back to back (as the model stores q/k/v
// and gate/up on a GPU) run as one GEMM whose columns are split (matmul_multi) or combined by the activation
// (gated_matmul). Checked against the double reference of each product, with the thresholds of the plain GEMM path;
// the same weights in separate allocations must give the same answers through the unfused path.
#include <fmt/format.h>

#include <functional>

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
    // Gate/up of 37 rows (the activation's scalar path) and of 64 (its 16-byte path).
    for (DType dt : {DType::BF16, DType::F16, DType::F32, DType::Q8_0, DType::Q4_K})
    for (int64_t nf : {int64_t(37), int64_t(64)}) {
        const int64_t K = is_quantized(dt) ? 4096 : 512;
        const int64_t ns[3] = {96, nf, nf};
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
            const std::string what = fmt::format("{} M={} K={} gate/up rows {}", dtype_name(dt), M, K, nf);
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

// Wall time of the decode products of a Llama-3.1-8B layer (bf16) at each batch size, as weight bandwidth:
// test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*MatmulTiming*'
TEST_F(BackendOps, DISABLED_MatmulTiming) {
    Backend& be = gpu();
    struct Shape {
        const char* name;
        int64_t n_parts, N, K;  // n_parts weights of [N, K] back to back (q/k/v are 4096 + 1024 + 1024 rows)
    };
    const Shape shapes[] = {{"qkv 6144x4096", 1, 6144, 4096}, {"o 4096x4096", 1, 4096, 4096},
                            {"gate+up 2x14336x4096", 2, 14336, 4096}, {"down 4096x14336", 1, 4096, 14336},
                            {"lm_head 128256x4096", 1, 128256, 4096}};
    for (const Shape& sh : shapes) {
        const int64_t rows = sh.n_parts * sh.N;
        std::vector<uint8_t> w = random_weights(DType::BF16, rows, sh.K, 7);
        DevTensor wt(be, DType::BF16, {rows, sh.K}, w.data());
        const double bytes = double(rows) * double(sh.K) * 2.0;
        for (int64_t M : {1, 4, 8, 9, 16, 32, 64, 128, 256}) {
            const std::vector<float> x = random_floats(size_t(M * sh.K), 8);
            DevTensor xt(be, DType::F32, {M, sh.K}, x.data());
            DevTensor a(be, DType::F32, {M, sh.N}), b(be, DType::F32, {M, sh.N});
            const Tensor half0(wt.t.data, DType::BF16, {sh.N, sh.K}, be.device());
            const Tensor half1(static_cast<char*>(wt.t.data) + size_t(sh.N * sh.K * 2), DType::BF16, {sh.N, sh.K},
                               be.device());
            auto op = [&] {
                if (sh.n_parts == 2) be.gated_matmul(a.t, b.t, xt.t, half0, half1, Activation::Silu);
                else be.matmul(a.t, xt.t, half0);
            };
            const double us = time_us(be, 20, op, 3);
            std::printf("matmul bf16 %-22s M=%-4ld %9.1f us %7.2f TB/s\n", sh.name, long(M), us, bytes / us * 1e-6);
        }
    }
}

// The batch-1 decode products of all 32 layers of a Llama-3.1-8B (bf16, 14 GB of weights, so nothing stays in L2),
// as the decode step issues them: each kind over all layers (eager launches), then the whole sequence q/k/v, o,
// gate/up, down x 32 captured as one graph; against a device-to-device copy of the same bytes in the same run:
// test_backend_ops --gtest_also_run_disabled_tests --gtest_filter='*DecodeGemvStreamTiming*'
TEST_F(BackendOps, DISABLED_DecodeGemvStreamTiming) {
    Backend& be = gpu();
    constexpr int kLayers = 32;
    constexpr int64_t D = 4096, F = 14336, QKV = 6144;
    struct Layer {
        Buffer qkv, o, gu, down;
    };
    std::vector<uint16_t> pattern(size_t(32) << 20);  // bf16 values in [-1, 1), any pattern will do
    uint32_t state = 12345;
    for (uint16_t& v : pattern) {
        state = state * 1664525u + 1013904223u;
        v = uint16_t(0x3c00u | ((state >> 16) & 0x7fu) | ((state >> 8) & 0x8000u));
    }
    auto filled = [&](int64_t rows, int64_t cols) {
        const size_t bytes = size_t(rows * cols) * 2;
        Buffer b = be.alloc(bytes);
        for (size_t off = 0; off < bytes; off += pattern.size() * 2)
            be.copy_from_host(static_cast<char*>(b.data()) + off, pattern.data(), std::min(pattern.size() * 2, bytes - off));
        return b;
    };
    std::vector<Layer> layers;
    for (int l = 0; l < kLayers; l++) layers.push_back({filled(QKV, D), filled(D, D), filled(2 * F, D), filled(D, F)});
    const std::vector<float> xd = random_floats(size_t(F), 5);
    DevTensor x(be, DType::F32, {1, D}, xd.data()), xf(be, DType::F32, {1, F}, xd.data());
    DevTensor q(be, DType::F32, {1, D}), k(be, DType::F32, {1, 1024}), v(be, DType::F32, {1, 1024});
    DevTensor o(be, DType::F32, {1, D}), gate(be, DType::F32, {1, F}), up(be, DType::F32, {1, F});
    auto view = [&](const Buffer& b, int64_t row0, int64_t rows, int64_t cols) {
        return Tensor(static_cast<char*>(b.data()) + size_t(row0 * cols) * 2, DType::BF16, {rows, cols}, be.device());
    };
    auto qkv = [&](const Layer& L) {
        Tensor outs[3] = {q.t, k.t, v.t};
        const Tensor ws[3] = {view(L.qkv, 0, D, D), view(L.qkv, D, 1024, D), view(L.qkv, D + 1024, 1024, D)};
        be.matmul_multi(outs, x.t, ws);
    };
    auto proj_o = [&](const Layer& L) { be.matmul(o.t, x.t, view(L.o, 0, D, D)); };
    auto gated = [&](const Layer& L) {
        be.gated_matmul(gate.t, up.t, x.t, view(L.gu, 0, F, D), view(L.gu, F, F, D), Activation::Silu);
    };
    auto down = [&](const Layer& L) { be.matmul(o.t, xf.t, view(L.down, 0, D, F)); };
    // The copy: the whole of layer 0..31's down matrices into the gate/up areas of the same size (bytes read).
    const double down_bytes = double(D * F) * 2.0;
    const double copy_us = time_us(be, 5, [&] {
        for (int l = 0; l < kLayers; l++) be.copy(layers[size_t(l)].gu.data(), layers[size_t(l)].down.data(), size_t(down_bytes));
    }) / kLayers;
    // The roofline's bandwidth: bytes read plus bytes written per second of the copy (about 4.3 TB/s on an H200).
    const double copy_tbs = 2.0 * down_bytes / copy_us * 1e-6;
    std::printf("device-to-device copy of %.0f MB: %.1f us, %.2f TB/s (read + write)\n", down_bytes * 1e-6, copy_us,
                copy_tbs);
    struct Kind {
        const char* name;
        std::function<void(const Layer&)> op;
        double bytes;
    };
    const Kind kinds[] = {{"qkv 6144x4096", qkv, double(QKV * D) * 2}, {"o 4096x4096", proj_o, double(D * D) * 2},
                          {"gate+up 2x14336x4096", gated, double(2 * F * D) * 2}, {"down 4096x14336", down, down_bytes}};
    double layer_bytes = 0;
    for (const Kind& kd : kinds) {
        const double us = time_us(be, 10, [&] { for (const Layer& L : layers) kd.op(L); }) / kLayers;
        layer_bytes += kd.bytes;
        std::printf("gemv bf16 %-22s %8.2f us %6.2f TB/s  %5.1f%% of the copy\n", kd.name, us, kd.bytes / us * 1e-6,
                    100.0 * kd.bytes / us * 1e-6 / copy_tbs);
    }
    auto all = [&] {
        for (const Layer& L : layers) qkv(L), proj_o(L), gated(L), down(L);
    };
    all();
    be.synchronize();
    be.begin_capture();
    all();
    std::unique_ptr<OpGraph> graph = be.end_capture();
    const double us = time_us(be, 10, [&] { graph->launch(); });
    std::printf("graph of 32 layers' products: %.1f us (%.2f us per layer), %.2f TB/s  %5.1f%% of the copy\n", us,
                us / kLayers, layer_bytes * kLayers / us * 1e-6, 100.0 * layer_bytes * kLayers / us * 1e-6 / copy_tbs);
}

}  // namespace osprey::backend::testing
