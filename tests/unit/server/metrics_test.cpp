// Prometheus text format of the server's metrics, expected text written by hand.
#include <gtest/gtest.h>

#include "server/metrics.h"

using namespace osprey;
using namespace osprey::server;

TEST(Metrics, Number) {
    EXPECT_EQ(prometheus_number(0), "0");
    EXPECT_EQ(prometheus_number(12), "12");
    EXPECT_EQ(prometheus_number(0.25), "0.25");
    EXPECT_EQ(prometheus_number(1e300 * 1e300), "+Inf");
}

TEST(Metrics, HistogramCumulativeBuckets) {
    Histogram h({0.1, 1.0});
    h.observe(0.05);
    h.observe(0.1);  // le is inclusive
    h.observe(0.5);
    h.observe(3.0);
    std::string out;
    h.render(out, "x_seconds", "Help text.");
    EXPECT_EQ(out,
              "# HELP x_seconds Help text.\n"
              "# TYPE x_seconds histogram\n"
              "x_seconds_bucket{le=\"0.1\"} 2\n"
              "x_seconds_bucket{le=\"1\"} 3\n"
              "x_seconds_bucket{le=\"+Inf\"} 4\n"
              "x_seconds_sum 3.65\n"
              "x_seconds_count 4\n");
}

static bool has_line(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(Metrics, RenderEngineStatsAndRequests) {
    Metrics m;
    m.count_response(200);
    m.count_response(200);
    m.count_response(429);
    m.observe_request(0.05, 0.02, 1.2, true);
    engine::EngineStats s;
    s.n_waiting = 3;
    s.n_running = 2;
    s.n_kv_blocks = 64;
    s.n_kv_blocks_used = 16;
    s.n_prompt_tokens = 1000;
    s.n_generation_tokens = 250;
    s.n_preemptions = 7;
    s.prefix_cache_queries = 400;
    s.prefix_cache_hits = 100;
    s.kv_slots_allocated = 1024;
    s.kv_slots_used = 768;
    const std::string t = m.render(s);
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_slots_allocated_total 1024"));
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_slots_used_total 768"));
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_waste_ratio 0.25"));
    EXPECT_TRUE(has_line(t, "# TYPE osprey_requests_total counter"));
    EXPECT_TRUE(has_line(t, "osprey_requests_total{status=\"200\"} 2"));
    EXPECT_TRUE(has_line(t, "osprey_requests_total{status=\"429\"} 1"));
    EXPECT_TRUE(has_line(t, "osprey_prompt_tokens_total 1000"));
    EXPECT_TRUE(has_line(t, "osprey_generation_tokens_total 250"));
    EXPECT_TRUE(has_line(t, "osprey_num_requests_waiting 3"));
    EXPECT_TRUE(has_line(t, "osprey_num_requests_running 2"));
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_blocks_used 16"));
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_blocks_total 64"));
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_usage_ratio 0.25"));
    EXPECT_TRUE(has_line(t, "osprey_prefix_cache_queries_total 400"));
    EXPECT_TRUE(has_line(t, "osprey_prefix_cache_hits_total 100"));
    EXPECT_TRUE(has_line(t, "osprey_prefix_cache_hit_rate 0.25"));
    EXPECT_TRUE(has_line(t, "osprey_num_preemptions_total 7"));
    EXPECT_TRUE(has_line(t, "# TYPE osprey_num_preemptions_total counter"));
    EXPECT_TRUE(has_line(t, "# TYPE osprey_kv_cache_usage_ratio gauge"));
    EXPECT_TRUE(has_line(t, "# TYPE osprey_time_to_first_token_seconds histogram"));
    EXPECT_TRUE(has_line(t, "osprey_time_to_first_token_seconds_bucket{le=\"0.04\"} 0"));
    EXPECT_TRUE(has_line(t, "osprey_time_to_first_token_seconds_bucket{le=\"0.06\"} 1"));
    EXPECT_TRUE(has_line(t, "osprey_time_to_first_token_seconds_count 1"));
    EXPECT_TRUE(has_line(t, "osprey_time_per_output_token_seconds_bucket{le=\"0.025\"} 1"));
    EXPECT_TRUE(has_line(t, "osprey_e2e_request_latency_seconds_bucket{le=\"1\"} 0"));
    EXPECT_TRUE(has_line(t, "osprey_e2e_request_latency_seconds_bucket{le=\"1.5\"} 1"));
    EXPECT_TRUE(has_line(t, "osprey_e2e_request_latency_seconds_sum 1.2"));
    // Every non-comment line is "name{labels} value" or "name value".
    size_t pos = 0;
    while (pos < t.size()) {
        const size_t end = t.find('\n', pos);
        ASSERT_NE(end, std::string::npos) << "text must end with a newline";
        const std::string line = t.substr(pos, end - pos);
        if (line[0] != '#') {
            ASSERT_EQ(std::count(line.begin(), line.end(), ' '), 1) << line;
            EXPECT_EQ(line.rfind("osprey_", 0), 0u) << line;
        }
        pos = end + 1;
    }
}

TEST(Metrics, EmptyPoolRatioIsZero) {
    Metrics m;
    const std::string t = m.render(engine::EngineStats{});
    EXPECT_TRUE(has_line(t, "osprey_kv_cache_usage_ratio 0"));
    EXPECT_TRUE(has_line(t, "osprey_prefix_cache_hit_rate 0"));
}
