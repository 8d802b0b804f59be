// Every supported architecture through the Hugging Face path against transformers (float32): tiny configs (llama
// with llama3 rope scaling, qwen2 with qkv bias, qwen3 with QK-norm, mistral with a sliding window, gemma3 with
// sliding and global layers) with seeded random weights from synthesize_hf_model — the same weights
// tests/golden/make_arch_goldens.py gave transformers. Random weights give flat distributions with near ties, so
// besides KL the log-probabilities themselves are compared, and top-1 only where the reference has a clear margin.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "formats/hf_synth.h"
#include "model_test_util.h"

using namespace osprey;

namespace {

void check_arch(const std::string& name) {
    const std::string dir = std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/tiny_archs/";
    const test_util::ModelGolden g = test_util::read_golden_file(dir + name + ".golden");
    const std::string out = (std::filesystem::temp_directory_path() / ("osprey-arch-" + name)).string();
    std::filesystem::remove_all(out);
    formats::SynthOptions so;
    so.config_path = dir + name + ".json";
    so.dtype = DType::F32;
    so.seed = 7;
    so.out_dir = out;
    formats::synthesize_hf_model(so);

    auto be = backend::make_cpu_backend(0);
    engine::LoadOptions lo;
    lo.need_tokenizer = false;
    engine::LoadedModel m = engine::load_model(out, *be, lo);
    const int n = g.n_positions();
    engine::Generator gen(*m.model, n + 16, 16, 32);  // prefill in chunks of 32: crosses the window edges
    std::vector<float> row(static_cast<size_t>(m.config.n_vocab));
    double kl_sum = 0, max_diff = 0;
    int n_clear = 0, agree = 0;
    gen.score(std::span<const int32_t>(g.tokens.data(), size_t(n)), [&](int first, const Tensor& logits) {
        for (int r = 0; r < logits.shape[0]; r++) {
            const int pos = first + r;
            be->copy_to_host(row.data(), logits.as<float>() + size_t(r) * row.size(), row.size() * 4);
            const float lse = engine::log_sum_exp(row);
            const int32_t* ids = &g.top_ids[size_t(pos) * size_t(g.k)];
            const float* lp = &g.top_logprobs[size_t(pos) * size_t(g.k)];
            double kl = 0;
            for (int j = 0; j < g.k; j++) {
                const double q = double(row[size_t(ids[j])] - lse);
                kl += std::exp(double(lp[j])) * (double(lp[j]) - q);
                max_diff = std::max(max_diff, std::fabs(double(lp[j]) - q));
            }
            kl_sum += kl;
            if (lp[0] - lp[1] > 1e-3f) {
                n_clear++;
                int best = 0;
                for (int t = 1; t < int(row.size()); t++)
                    if (row[size_t(t)] > row[size_t(best)]) best = t;
                agree += best == ids[0];
            }
        }
    });
    std::filesystem::remove_all(out);
    std::printf("%s: max |logprob diff| %.3g, KL(top-16) %.3g, top-1 %d/%d\n", name.c_str(), max_diff, kl_sum / n,
                agree, n_clear);
    EXPECT_LE(max_diff, 1e-3);
    EXPECT_LE(kl_sum / n, 1e-5);
    EXPECT_EQ(agree, n_clear);
}

}  // namespace

TEST(ArchGolden, LlamaWithLlama3RopeScaling) { check_arch("llama3_scaled"); }
TEST(ArchGolden, Qwen2WithQkvBias) { check_arch("qwen2_bias"); }
TEST(ArchGolden, Qwen3WithQkNorm) { check_arch("qwen3_qknorm"); }
TEST(ArchGolden, MistralWithSlidingWindow) { check_arch("mistral_window"); }
TEST(ArchGolden, Gemma3WithSlidingAndGlobalLayers) { check_arch("gemma3_window"); }
