// Penalties and log-probabilities (backend/sampling.h, Backend::apply_penalties / row_logprobs / token_logprobs on
// the CPU backend) against plain statements: the engine's host sampler's penalty loop over prompt and generated
// tokens (bit for bit), a long-double log-sum-exp, and a full sort for the top n with ties by id.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/sampling.h"

using namespace osprey;
using namespace osprey::backend;

namespace {

struct Penalties {
    float repetition = 1.0f, presence = 0.0f, frequency = 0.0f;
};

// The engine's host sampler (Sampler::sample) before the draw, restated: counts over generated tokens, the
// repetition penalty once per distinct token of prompt + generated, then presence/frequency over counted tokens.
void sampler_penalties(std::vector<float>& logits, const std::vector<int32_t>& prompt,
                       const std::vector<int32_t>& generated, const Penalties& p) {
    const int n_vocab = int(logits.size());
    const bool rep = p.repetition != 1.0f;
    const bool pres = p.presence != 0.0f || p.frequency != 0.0f;
    if (!rep && !pres) return;
    std::vector<int> counts(size_t(n_vocab), 0);
    for (int32_t t : generated)
        if (t >= 0 && t < n_vocab) counts[size_t(t)]++;
    if (rep) {
        std::vector<char> seen(size_t(n_vocab), 0);
        for (const auto* toks : {&prompt, &generated})
            for (int32_t t : *toks)
                if (t >= 0 && t < n_vocab && !seen[size_t(t)]) {
                    seen[size_t(t)] = 1;
                    float& l = logits[size_t(t)];
                    l = l > 0 ? l / p.repetition : l * p.repetition;
                }
    }
    if (pres)
        for (int t = 0; t < n_vocab; t++)
            if (counts[size_t(t)] > 0) logits[size_t(t)] -= p.frequency * float(counts[size_t(t)]) + p.presence;
}

// The op's input for one row: distinct ids of prompt + generated (in a shuffled order) with generated counts.
std::vector<int32_t> history_entries(const std::vector<int32_t>& prompt, const std::vector<int32_t>& generated,
                                     std::mt19937& rng) {
    std::map<int32_t, int32_t> counts;
    for (int32_t t : prompt) counts.emplace(t, 0);
    for (int32_t t : generated) counts[t]++;
    std::vector<std::pair<int32_t, int32_t>> pairs(counts.begin(), counts.end());
    std::shuffle(pairs.begin(), pairs.end(), rng);
    std::vector<int32_t> e;
    for (auto [id, c] : pairs) e.push_back(id), e.push_back(c);
    return e;
}

std::vector<float> random_row(int V, std::mt19937& rng, float scale) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(V));
    for (float& x : v) x = d(rng);
    return v;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

}  // namespace

TEST(LogitOps, PenaltiesMatchTheHostSamplerBitForBit) {
    auto be = make_cpu_backend(2);
    std::mt19937 rng(7);
    const int V = 3000, R = 24;
    const Penalties cases[] = {{1.3f, 0.0f, 0.0f},   {1.0f, 0.5f, 0.3f},  {0.7f, -0.4f, 1.1f}, {1.0f, 0.0f, 0.0f},
                               {2.5f, 2.0f, -2.0f},  {1.1f, 0.0f, 0.25f}, {1.0f, -1.5f, 0.0f}, {1.17f, 0.31f, 0.77f}};
    std::vector<float> logits, want;
    std::vector<int32_t> entries, row_start = {0};
    std::vector<float> params;
    for (int r = 0; r < R; r++) {
        std::vector<float> row = random_row(V, rng, 3.0f);
        row[5] = 0.0f, row[6] = -0.0f;  // signed zeros take the l * rep branch
        // Histories with many repeats: a small pool of ids (some outside [0, V)), sizes 0..2000.
        const int n_prompt = int(rng() % 1200), n_gen = r % 5 == 0 ? 0 : int(rng() % 800);
        const int pool = 1 + int(rng() % 900);
        auto draw = [&] {
            const int u = int(rng() % uint32_t(pool));
            return u % 97 == 3 ? (u % 2 ? V + u : -1 - u) : (u * 7 + r) % V;
        };
        std::vector<int32_t> prompt(static_cast<size_t>(n_prompt)), gen(static_cast<size_t>(n_gen));
        for (auto& t : prompt) t = draw();
        for (auto& t : gen) t = draw();
        prompt.push_back(5), gen.push_back(6);
        const Penalties p = cases[r % 8];
        std::vector<float> ref = row;
        sampler_penalties(ref, prompt, gen, p);
        const std::vector<int32_t> e = history_entries(prompt, gen, rng);
        // The per-row reference by itself.
        std::vector<float> one = row;
        const float prm[4] = {p.repetition, p.presence, p.frequency, 0.0f};
        apply_penalties_row(one.data(), V, e.data(), int64_t(e.size() / 2), prm);
        ASSERT_EQ(0, std::memcmp(one.data(), ref.data(), size_t(V) * 4)) << "row " << r;
        if (p.repetition != 1.0f || p.presence != 0.0f || p.frequency != 0.0f)
            EXPECT_NE(0, std::memcmp(row.data(), ref.data(), size_t(V) * 4)) << "the penalties changed nothing";
        logits.insert(logits.end(), row.begin(), row.end());
        want.insert(want.end(), ref.begin(), ref.end());
        entries.insert(entries.end(), e.begin(), e.end());
        row_start.push_back(int32_t(entries.size() / 2));
        params.insert(params.end(), {p.repetition, p.presence, p.frequency, 0.0f});
    }
    const int64_t E = int64_t(entries.size() / 2);
    be->apply_penalties(Tensor(logits.data(), DType::F32, {R, V}), Tensor(entries.data(), DType::I32, {E, 2}),
                        Tensor(row_start.data(), DType::I32, {R + 1}), Tensor(params.data(), DType::F32, {R, 4}));
    for (size_t i = 0; i < logits.size(); i++)
        ASSERT_EQ(bits(logits[i]), bits(want[i])) << "row " << i / V << " id " << i % V;
}

TEST(LogitOps, LogSumExpMatchesALongDoubleSum) {
    std::mt19937 rng(11);
    for (int V : {1, 2, 1000, 49152, 128256}) {
        for (float scale : {0.5f, 4.0f, 30.0f}) {
            const std::vector<float> row = random_row(V, rng, scale);
            long double m = -INFINITY, s = 0;
            for (float v : row) m = std::max(m, (long double)v);
            for (float v : row) s += std::exp((long double)v - m);
            const double want = double(m + std::log(s));
            const float got = row_log_sum_exp(row);
            // Rounded to float twice (log(s), then m + it): within an ulp of each.
            auto ulp = [](long double x) {
                return std::ldexp(1.0, std::ilogb(std::max(double(std::fabs(x)), 1e-30)) - 23);
            };
            const double tol = ulp(std::log(s)) + ulp(std::max(std::fabs(m), std::fabs((long double)want)));
            EXPECT_LE(std::fabs(double(got) - want), tol) << "V=" << V << " scale=" << scale;
        }
    }
    const float inf = std::numeric_limits<float>::infinity();
    EXPECT_EQ(row_log_sum_exp(std::vector<float>{-inf, -inf}), -inf);
    EXPECT_EQ(row_log_sum_exp(std::vector<float>{1.0f, inf}), inf);
    EXPECT_NEAR(row_log_sum_exp(std::vector<float>{-inf, 0.0f}), 0.0f, 0.0f);
    EXPECT_NEAR(row_log_sum_exp(std::vector<float>{2.0f, 2.0f}), 2.0f + std::log(2.0f), 1e-6f);
}

TEST(LogitOps, TopLogprobsAreTheLargestWithTiesBySmallerId) {
    auto be = make_cpu_backend(2);
    std::mt19937 rng(3);
    for (int V : {1, 3, 17, 5000}) {
        for (int n : {0, 1, 5, 20}) {
            const int R = 6;
            std::vector<float> logits;
            for (int r = 0; r < R; r++) {
                std::vector<float> row = random_row(V, rng, 2.0f);
                if (r % 2 == 1)  // few distinct values: long runs of ties, incl. -0 against +0
                    for (int i = 0; i < V; i++) {
                        const int q = int(rng() % 5);
                        row[size_t(i)] = q == 4 ? ((i & 1) ? -0.0f : 0.0f) : float(q) * 0.5f - 1.0f;
                    }
                if (r == 4)
                    for (float& x : row) x = 1.25f;  // one value everywhere
                logits.insert(logits.end(), row.begin(), row.end());
            }
            std::vector<int32_t> ids(size_t(R * std::max(n, 1)), -7);
            std::vector<float> lp(size_t(R * std::max(n, 1)), NAN), lse(size_t(R), NAN);
            be->row_logprobs(Tensor(ids.data(), DType::I32, {R, std::max(n, 1)}),
                             Tensor(lp.data(), DType::F32, {R, std::max(n, 1)}), Tensor(lse.data(), DType::F32, {R}),
                             Tensor(logits.data(), DType::F32, {R, V}), n);
            for (int r = 0; r < R; r++) {
                const float* row = logits.data() + size_t(r) * size_t(V);
                const float want_lse = row_log_sum_exp(std::span<const float>(row, size_t(V)));
                EXPECT_EQ(bits(lse[size_t(r)]), bits(want_lse));
                // The host sampler's order: full sort by value descending, ties by id ascending.
                std::vector<int32_t> order(static_cast<size_t>(V));
                std::iota(order.begin(), order.end(), 0);
                std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
                for (int j = 0; j < n; j++) {
                    const size_t k = size_t(r * n + j);
                    if (j >= V) {
                        EXPECT_EQ(ids[k], -1);
                        EXPECT_EQ(lp[k], -std::numeric_limits<float>::infinity());
                        continue;
                    }
                    ASSERT_EQ(ids[k], order[size_t(j)]) << "V=" << V << " n=" << n << " row " << r << " slot " << j;
                    EXPECT_EQ(bits(lp[k]), bits(row[order[size_t(j)]] - want_lse));
                }
                if (n == 0) EXPECT_EQ(ids[size_t(r)], -7) << "n = 0 must not write the top tensors";
            }
        }
    }
}

TEST(LogitOps, TokenLogprobsAreLogitMinusLse) {
    auto be = make_cpu_backend(1);
    std::mt19937 rng(5);
    const int R = 4, V = 100;
    std::vector<float> logits = random_row(R * V, rng, 3.0f);
    std::vector<float> lse = {1.5f, -2.0f, 0.25f, 7.0f};
    std::vector<int32_t> ids = {0, 99, 42, 100};
    std::vector<float> out(size_t(R), 0.0f);
    be->token_logprobs(Tensor(out.data(), DType::F32, {R}), Tensor(logits.data(), DType::F32, {R, V}),
                       Tensor(lse.data(), DType::F32, {R}), Tensor(ids.data(), DType::I32, {R}));
    for (int r = 0; r < 3; r++) EXPECT_EQ(out[size_t(r)], logits[size_t(r * V + ids[size_t(r)])] - lse[size_t(r)]);
    EXPECT_TRUE(std::isnan(out[3]));
}
