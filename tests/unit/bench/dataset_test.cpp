// Output-length distributions of the benchmark datasets (no tokenizer: prompts are random words).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "bench/dataset.h"
#include "core/error.h"

using namespace osprey;
using namespace osprey::bench;

namespace {

DatasetOptions random_options(int n, int out_len) {
    DatasetOptions o;
    o.name = "random";
    o.num_prompts = n;
    o.random_input_len = 8;
    o.random_output_len = out_len;
    o.seed = 7;
    return o;
}

}  // namespace

TEST(BenchDataset, UniformOutputLengthsStayInTheRange) {
    DatasetOptions o = random_options(2000, 200);
    o.random_range_ratio = 0.5;
    const auto reqs = sample_requests(o, nullptr);
    ASSERT_EQ(reqs.size(), 2000u);
    for (const SampleRequest& r : reqs) {
        EXPECT_GE(r.expected_output_len, 100);
        EXPECT_LE(r.expected_output_len, 300);
    }
}

TEST(BenchDataset, ExponentialOutputLengthsHaveTheMeanAndALongTail) {
    DatasetOptions o = random_options(4000, 200);
    o.output_len_dist = "exponential";
    const auto reqs = sample_requests(o, nullptr);
    ASSERT_EQ(reqs.size(), 4000u);
    double sum = 0;
    int longest = 0, shorter_than_mean = 0;
    for (const SampleRequest& r : reqs) {
        ASSERT_GE(r.expected_output_len, 1);
        ASSERT_LE(r.expected_output_len, 1600);
        sum += r.expected_output_len;
        longest = std::max(longest, r.expected_output_len);
        shorter_than_mean += r.expected_output_len < 200;
    }
    // Exp(1) scaled by 200: mean 200 (the clamp at 8x removes ~0.03%), P(X < mean) = 1 - 1/e = 0.632, and the
    // longest of 4,000 near 200 * ln 4000 = 1,660 (clamped to 1,600).
    EXPECT_NEAR(sum / 4000.0, 200.0, 12.0);
    EXPECT_NEAR(shorter_than_mean / 4000.0, 0.632, 0.03);
    EXPECT_GT(longest, 1000);
}

TEST(BenchDataset, UnknownOutputLengthDistributionIsAnError) {
    DatasetOptions o = random_options(4, 16);
    o.output_len_dist = "pareto";
    EXPECT_THROW(sample_requests(o, nullptr), Error);
}

TEST(BenchDataset, ShareGptFixedLengthsFollowTheExponentialDistribution) {
    DatasetOptions o;
    o.name = "sharegpt";
    o.path = std::string(OSPREY_SHARED_DIR) + "/data/prompts/sharegpt_v3_filtered_500.json";
    o.num_prompts = 400;
    o.sharegpt_output_len = 100;
    o.output_len_dist = "exponential";
    const auto reqs = sample_requests(o, nullptr);
    ASSERT_EQ(reqs.size(), 400u);
    double sum = 0;
    int longest = 0;
    for (const SampleRequest& r : reqs) sum += r.expected_output_len, longest = std::max(longest, r.expected_output_len);
    EXPECT_NEAR(sum / 400.0, 100.0, 15.0);
    EXPECT_GT(longest, 350);
}
