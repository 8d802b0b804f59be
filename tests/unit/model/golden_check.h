// Teacher-forced comparison of a model with its transformers golden (top-1 agreement and KL).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "engine/sampler.h"
#include "model_test_util.h"

namespace osprey::test_util {


struct Agreement {
    double top1 = 0;
    double mean_kl = 0;
    double max_kl = 0;
};

inline Agreement compare_with_golden(const std::string& model_path, const ModelGolden& g) {
    auto be = backend::make_cpu_backend(0);
    engine::LoadOptions lo;
    lo.need_tokenizer = false;
    engine::LoadedModel m = engine::load_model(model_path, *be, lo);
    const int n = g.n_positions();
    engine::Generator gen(*m.model, n + 16, 16, 256);
    const int n_vocab = m.config.n_vocab;
    std::vector<float> row(static_cast<size_t>(n_vocab));
    int agree = 0;
    double kl_sum = 0, kl_max = 0;
    gen.score(std::span<const int32_t>(g.tokens.data(), size_t(n)), [&](int first, const Tensor& logits) {
        for (int r = 0; r < logits.shape[0]; r++) {
            const int pos = first + r;
            be->copy_to_host(row.data(), static_cast<const float*>(logits.data) + size_t(r) * size_t(n_vocab),
                             row.size() * 4);
            const float lse = engine::log_sum_exp(row);
            int best = 0;
            for (int t = 1; t < n_vocab; t++)
                if (row[size_t(t)] > row[size_t(best)]) best = t;
            const int32_t* ids = &g.top_ids[size_t(pos) * size_t(g.k)];
            const float* lp = &g.top_logprobs[size_t(pos) * size_t(g.k)];
            agree += best == ids[0];
            double kl = 0, p_in = 0, q_in = 0;
            for (int j = 0; j < g.k; j++) {
                const double p = std::exp(double(lp[j]));
                const double logq = double(row[size_t(ids[j])] - lse);
                kl += p * (double(lp[j]) - logq);
                p_in += p;
                q_in += std::exp(logq);
            }
            const double p_tail = std::max(0.0, 1.0 - p_in), q_tail = std::max(1e-12, 1.0 - q_in);
            if (p_tail > 0) kl += p_tail * std::log(p_tail / q_tail);
            kl_sum += kl;
            kl_max = std::max(kl_max, kl);
        }
    });
    return {double(agree) / n, kl_sum / n, kl_max};
}

inline void check_model_against_golden(const std::string& path, const std::string& golden) {
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not fetched (scripts/fetch_models.sh): " << path;
    const ModelGolden g = read_model_golden(golden);
    ASSERT_GE(g.n_positions(), 2048);
    const Agreement a = compare_with_golden(path, g);
    std::printf("%s: top-1 agreement %.4f, mean KL %.3g, max KL %.3g over %d positions\n", golden.c_str(), a.top1,
                a.mean_kl, a.max_kl, g.n_positions());
    EXPECT_GE(a.top1, 0.99);
    EXPECT_LE(a.mean_kl, 1e-3);
}


}  // namespace osprey::test_util
