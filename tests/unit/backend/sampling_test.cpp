// backend::sample_row against a plain statement of its definition (sort by probability, cut, renormalize): the
// kept set is exact, draws never leave it, their frequencies follow the renormalized probabilities, and the draw
// depends on (seed, counter) only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "backend/sampling.h"

using namespace osprey::backend;

namespace {

// The truncated distribution, straight from the definition in double precision: token -> probability.
std::map<int, double> truncated(const std::vector<float>& logits, const SamplingRow& p) {
    const int V = int(logits.size());
    std::vector<double> s(static_cast<size_t>(V));
    for (int i = 0; i < V; i++) s[size_t(i)] = double(logits[size_t(i)] * (1.0f / p.temperature));
    const double m = *std::max_element(s.begin(), s.end());
    std::vector<bool> keep(static_cast<size_t>(V), true);
    for (int i = 0; i < V && p.top_k > 0; i++) {
        int greater = 0;
        for (int j = 0; j < V; j++) greater += s[size_t(j)] > s[size_t(i)];
        if (greater >= p.top_k) keep[size_t(i)] = false;
    }
    const std::vector<bool> keep_k = keep;  // top-p measures mass among the top-k survivors
    for (int i = 0; i < V; i++)
        if (p.min_p > 0 && s[size_t(i)] < m + std::log(double(p.min_p))) keep[size_t(i)] = false;
    if (p.top_p < 1.0f) {
        double z = 0;
        for (int j = 0; j < V; j++)
            if (keep_k[size_t(j)]) z += std::exp(s[size_t(j)] - m);
        for (int i = 0; i < V; i++) {
            double above = 0;
            for (int j = 0; j < V; j++)
                if (keep_k[size_t(j)] && s[size_t(j)] > s[size_t(i)]) above += std::exp(s[size_t(j)] - m);
            if (above >= double(p.top_p) * z) keep[size_t(i)] = false;
        }
    }
    std::map<int, double> out;
    double total = 0;
    for (int i = 0; i < V; i++)
        if (keep[size_t(i)]) total += std::exp(s[size_t(i)] - m);
    for (int i = 0; i < V; i++)
        if (keep[size_t(i)]) out[i] = std::exp(s[size_t(i)] - m) / total;
    return out;
}

std::vector<float> random_logits(int V, uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(V));
    for (float& x : v) x = d(rng);
    return v;
}

}  // namespace

TEST(SampleRow, GreedyIsTheFirstMaximum) {
    std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
    SamplingRow p;
    p.temperature = 0.0f;
    EXPECT_EQ(sample_row(l, p), 1);
}

TEST(SampleRow, DrawIsUniformAndDependsOnSeedAndCounterOnly) {
    double sum = 0;
    std::set<float> distinct;
    for (uint64_t c = 0; c < 20000; c++) {
        const float u = sampling_uniform(42, c);
        ASSERT_GE(u, 0.0f);
        ASSERT_LT(u, 1.0f);
        sum += u;
        distinct.insert(u);
    }
    EXPECT_NEAR(sum / 20000, 0.5, 0.01);
    EXPECT_GT(distinct.size(), 19900u);
    EXPECT_EQ(sampling_uniform(7, 3), sampling_uniform(7, 3));
    EXPECT_NE(sampling_uniform(7, 3), sampling_uniform(8, 3));
}

TEST(SampleRow, KeptSetAndFrequenciesFollowTheDefinition) {
    // (temperature, top_k, top_p, min_p); seed and counter are set per draw.
    const SamplingRow cases[] = {{1.0f, 0, 1.0f, 0.0f}, {0.7f, 5, 1.0f, 0.0f}, {1.0f, 0, 0.8f, 0.0f},
                                 {1.3f, 0, 1.0f, 0.1f}, {0.9f, 12, 0.9f, 0.05f}, {1.0f, 1, 1.0f, 0.0f},
                                 {2.0f, 40, 0.5f, 0.0f}};
    uint32_t seed = 1;
    for (const SamplingRow& c : cases) {
        SCOPED_TRACE(testing::Message() << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p
                                        << " min_p=" << c.min_p);
        const std::vector<float> logits = random_logits(64, seed++, 2.0f);
        SamplingRow p = c;
        p.seed = 99;
        const std::map<int, double> want = truncated(logits, p);
        ASSERT_FALSE(want.empty());
        std::map<int, int> got;
        const int n = 40000;
        for (int i = 0; i < n; i++) {
            p.counter = uint64_t(i);
            const int t = sample_row(logits, p);
            ASSERT_TRUE(want.count(t)) << "token " << t << " is outside the kept set";
            got[t]++;
        }
        for (const auto& [t, prob] : want) {
            const double expected = prob * n, sd = std::sqrt(std::max(expected * (1 - prob), 1.0));
            EXPECT_NEAR(double(got[t]), expected, 5 * sd + 2) << "token " << t;
        }
    }
}

TEST(SampleRow, TiesAtTheThresholdsAreKeptTogether) {
    // Three tokens tie for the 2nd place: top_k = 2 keeps all four; top_p = 0.3 keeps the best alone (its
    // mass is above 0.3 already) while top_p = 0.9 keeps all the tied ones too.
    const std::vector<float> l = {3.0f, 1.0f, 1.0f, -5.0f, 1.0f};
    SamplingRow p;
    p.temperature = 1.0f;
    p.top_k = 2;
    EXPECT_EQ(truncated(l, p).size(), 4u);
    std::set<int> seen;
    for (uint64_t c = 0; c < 4000; c++) {
        p.counter = c;
        seen.insert(sample_row(l, p));
    }
    EXPECT_EQ(seen, (std::set<int>{0, 1, 2, 4}));
    p.top_k = 0;
    p.top_p = 0.3f;
    for (uint64_t c = 0; c < 200; c++) {
        p.counter = c;
        ASSERT_EQ(sample_row(l, p), 0);
    }
    p.top_p = 0.9f;
    seen.clear();
    for (uint64_t c = 0; c < 4000; c++) {
        p.counter = c;
        seen.insert(sample_row(l, p));
    }
    EXPECT_EQ(seen, (std::set<int>{0, 1, 2, 4}));
}

TEST(SampleRow, LargeVocabularyTopPMatchesTheDefinition) {
    // 50k tokens: the top-p walk grows its sorted prefix past the first 256 candidates.
    const std::vector<float> logits = random_logits(50000, 5, 0.3f);
    SamplingRow p;
    p.temperature = 1.0f, p.top_p = 0.2f, p.seed = 3;
    std::vector<double> s(logits.begin(), logits.end());
    std::vector<double> sorted = s;
    std::sort(sorted.rbegin(), sorted.rend());
    const double m = sorted[0];
    double z = 0;
    for (double v : s) z += std::exp(v - m);
    // The smallest kept logit: walk down until the mass above reaches top_p.
    double above = 0, smallest = sorted[0];
    for (double v : sorted) {
        if (above >= 0.2 * z) break;
        smallest = v;
        above += std::exp(v - m);
    }
    int outside = 0;
    for (uint64_t c = 0; c < 200; c++) {
        p.counter = c;
        outside += double(logits[size_t(sample_row(logits, p))]) < smallest;
    }
    EXPECT_EQ(outside, 0);
}
