// Statistics against numpy: the expected values below come from
//   python3 -c "import numpy as np; x=[3,1,4,1.5,9,2.6,5]; print([np.percentile(x,p) for p in
//   (0,25,50,90,95,99,99.9,100)], np.mean(x), np.std(x), np.median(x))"
#include <gtest/gtest.h>

#include <cmath>

#include "bench/arrivals.h"
#include "bench/sse_parser.h"
#include "bench/stats.h"
#include "core/error.h"

namespace osprey::bench {
namespace {

TEST(BenchStats, MatchesNumpy) {
    const std::vector<double> x = {3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0};
    const double ps[] = {0, 25, 50, 90, 95, 99, 99.9, 100};
    const double want[] = {1.0, 2.05, 3.0, 6.6, 7.8, 8.76, 8.976, 9.0};
    for (size_t i = 0; i < std::size(ps); ++i) EXPECT_NEAR(percentile_of(x, ps[i]), want[i], 1e-12) << ps[i];
    EXPECT_NEAR(mean_of(x), 3.7285714285714286, 1e-12);
    EXPECT_NEAR(std_of(x), 2.498407656153521, 1e-12);
    EXPECT_NEAR(median_of(x), 3.0, 1e-12);
}

TEST(BenchStats, EmptySampleIsZeroLikeVllm) {
    const MetricSummary s = summarize({}, {50, 99}, 1000);
    EXPECT_EQ(s.mean, 0);
    EXPECT_EQ(s.median, 0);
    EXPECT_EQ(s.std, 0);
    ASSERT_EQ(s.percentiles.size(), 2u);
    EXPECT_EQ(s.percentiles[1].second, 0);
}

TEST(BenchStats, PercentileWordsAndParsing) {
    EXPECT_EQ(percentile_word(99), "99");
    EXPECT_EQ(percentile_word(99.9), "99.9");
    EXPECT_EQ(parse_percentiles("50,90,95,99"), (std::vector<double>{50, 90, 95, 99}));
    EXPECT_THROW(parse_percentiles("50,101"), Error);
    EXPECT_THROW(parse_percentiles("x"), Error);
}

TEST(BenchSse, SplitsDataLinesAcrossReads) {
    SseParser p;
    auto a = p.feed("data: {\"a\":1}\n\nda");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0], "{\"a\":1}");
    auto b = p.feed("ta:{\"b\":2}\r\n\r\n: keep-alive\nevent: x\ndata: [DONE]\n\n");
    ASSERT_EQ(b.size(), 2u);
    EXPECT_EQ(b[0], "{\"b\":2}");
    EXPECT_EQ(b[1], "[DONE]");
    EXPECT_TRUE(p.feed("").empty());
    p.feed("data: tail");
    auto c = p.finish();
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0], "tail");
}

TEST(BenchArrivals, InfiniteRateSendsAllAtZero) {
    for (double t : arrival_times(5, INFINITY, 1.0, 0)) EXPECT_EQ(t, 0.0);
}

TEST(BenchArrivals, FixedRateIsEvenlySpaced) {
    const auto t = arrival_times(4, 8.0, INFINITY, 0);
    const double want[] = {0.125, 0.25, 0.375, 0.5};
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(t[size_t(i)], want[i], 1e-12);
}

// Gamma gaps with shape k and mean 1/rate have coefficient of variation 1/sqrt(k); the last arrival is n/rate.
TEST(BenchArrivals, GammaGapsHaveTheRequestedMeanAndBurstiness) {
    const int n = 20000;
    const double rate = 5.0;
    for (double k : {1.0, 0.25, 4.0}) {
        const auto t = arrival_times(n, rate, k, 1234);
        EXPECT_NEAR(t.back(), n / rate, 1e-6);
        std::vector<double> gaps;
        for (int i = 0; i < n; ++i) gaps.push_back(t[size_t(i)] - (i ? t[size_t(i) - 1] : 0.0));
        const double m = mean_of(gaps), cv = std_of(gaps) / m;
        EXPECT_NEAR(m, 1 / rate, 1e-9);
        EXPECT_NEAR(cv, 1 / std::sqrt(k), 0.05 / std::sqrt(k)) << "burstiness " << k;
        for (size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
    }
    EXPECT_EQ(arrival_times(50, 3.0, 1.0, 7), arrival_times(50, 3.0, 1.0, 7));
    EXPECT_NE(arrival_times(50, 3.0, 1.0, 7), arrival_times(50, 3.0, 1.0, 8));
    EXPECT_THROW(arrival_times(3, 0.0, 1.0, 0), Error);
    EXPECT_THROW(arrival_times(3, 1.0, -1.0, 0), Error);
}

}  // namespace
}  // namespace osprey::bench
