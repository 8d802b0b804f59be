// The serving benchmark against a scripted server whose delays are known: every metric and percentile must equal
// the value the script implies (hand-computed below, numpy's linear interpolation), within timer resolution.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "bench/serve_bench.h"
#include "bench/serve_metrics.h"
#include "bench/stats.h"
#include "core/error.h"
#include "unit/bench/scripted_server.h"

namespace osprey::bench {
namespace {

constexpr double kTolMs = 8.0;  // timer resolution on a loaded 2-core machine

SampleRequest scripted(int first, int gap, int n) {
    SampleRequest s;
    s.prompt = "first=" + std::to_string(first) + " gap=" + std::to_string(gap) + " n=" + std::to_string(n);
    s.expected_output_len = n;
    return s;
}

ServeConfig config_for(const testing::ScriptedServer& srv) {
    ServeConfig c;
    c.base_url = "http://127.0.0.1:" + std::to_string(srv.port());
    c.model = "scripted";
    c.ready_check = false;
    return c;
}

double p(const MetricSummary& s, double q) {
    for (const auto& [pp, v] : s.percentiles)
        if (pp == q) return v;
    ADD_FAILURE() << "no p" << q;
    return NAN;
}

// Runs a scenario until the machine held its schedule: a run whose every request is within the tolerance of its
// scripted TTFT and latency (the busy 2-core machines this runs on can stall a thread for tens of ms); at most 4
// tries, the last one is checked whatever it is.
template <typename Make>
ServeRun run_until_quiet(Make make_run, const std::vector<double>& want_ttft_ms, const std::vector<double>& want_e2el_ms) {
    ServeRun run;
    for (int attempt = 0; attempt < 4; ++attempt) {
        run = make_run();
        bool quiet = true;
        for (size_t i = 0; i < run.outputs.size(); ++i)
            quiet = quiet && run.outputs[i].success &&
                    std::abs(run.outputs[i].ttft * 1000 - want_ttft_ms[i]) < kTolMs / 2 &&
                    std::abs(run.outputs[i].latency * 1000 - want_e2el_ms[i]) < kTolMs / 2;
        if (quiet) break;
    }
    return run;
}

double since(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

// Request i: first chunk after 100 + 40 i ms, then 4 more every 20 + 4 i ms (5 tokens), at a fixed 10 requests/s.
//   TTFT = 100, 140, ..., 460     mean 280, p50 280, p90 424, p99 456.4, std 40 sqrt(8.25)
//   TPOT = gap = 20, 24, ..., 56  mean 38, p50 38, p90 52.4, p99 55.64
//   ITL  = each gap 4 times       mean 38, p50 38, p90 52.4, p99 56, std 4 sqrt(8.25)
//   E2EL = 180 + 56 i             mean 432, p50 432, p90 633.6, p99 678.96
SampleRequest varied(int i) { return scripted(100 + 40 * i, 20 + 4 * i, 5); }
std::vector<double> varied_ttft() {
    std::vector<double> v;
    for (int i = 0; i < 10; ++i) v.push_back(100 + 40 * i);
    return v;
}
std::vector<double> varied_e2el() {
    std::vector<double> v;
    for (int i = 0; i < 10; ++i) v.push_back(180 + 56 * i);
    return v;
}

void check_varied(const ServeRun& run, const ServeMetrics& m) {
    EXPECT_EQ(m.completed, 10);
    EXPECT_EQ(m.failed, 0);
    EXPECT_EQ(m.total_output, 50);
    EXPECT_EQ(m.total_input, 70);  // usage.prompt_tokens = 7 each
    EXPECT_NEAR(m.ttft.mean, 280, kTolMs);
    EXPECT_NEAR(m.ttft.median, 280, kTolMs);
    EXPECT_NEAR(m.ttft.std, 40 * std::sqrt(8.25), kTolMs);
    EXPECT_NEAR(p(m.ttft, 50), 280, kTolMs);
    EXPECT_NEAR(p(m.ttft, 90), 424, kTolMs);
    EXPECT_NEAR(p(m.ttft, 99), 456.4, kTolMs);
    EXPECT_NEAR(m.tpot.mean, 38, kTolMs / 2);
    EXPECT_NEAR(p(m.tpot, 50), 38, kTolMs / 2);
    EXPECT_NEAR(p(m.tpot, 90), 52.4, kTolMs / 2);
    EXPECT_NEAR(p(m.tpot, 99), 55.64, kTolMs / 2);
    EXPECT_EQ(m.itls.size(), 40u);
    EXPECT_NEAR(m.itl.mean, 38, kTolMs / 2);
    EXPECT_NEAR(m.itl.std, 4 * std::sqrt(8.25), kTolMs / 2);
    EXPECT_NEAR(p(m.itl, 50), 38, kTolMs);
    EXPECT_NEAR(p(m.itl, 90), 52.4, kTolMs);
    EXPECT_NEAR(p(m.itl, 99), 56, kTolMs);
    EXPECT_NEAR(m.e2el.mean, 432, kTolMs);
    EXPECT_NEAR(p(m.e2el, 50), 432, kTolMs);
    EXPECT_NEAR(p(m.e2el, 90), 633.6, kTolMs);
    EXPECT_NEAR(p(m.e2el, 99), 678.96, kTolMs);
    for (int i = 0; i < 10; ++i) {
        const RequestResult& r = run.outputs[size_t(i)];
        EXPECT_TRUE(r.success) << r.error;
        EXPECT_NEAR(r.ttft * 1000, 100 + 40 * i, kTolMs) << i;
        EXPECT_NEAR(r.latency * 1000, 180 + 56 * i, kTolMs) << i;
        EXPECT_EQ(r.output_tokens, 5);
        EXPECT_EQ(r.generated_text, "t0 t1 t2 t3 t4 ");
    }
}

TEST(BenchServe, FixedRateMetricsMatchTheScript) {
    testing::ScriptedServer srv;
    std::vector<SampleRequest> samples;
    for (int i = 0; i < 10; ++i) samples.push_back(varied(i));
    ServeConfig c = config_for(srv);
    c.request_rate = 10;
    c.burstiness = INFINITY;  // fixed rate: request i sent at (i + 1) / 10 s
    ServeRun run = run_until_quiet([&] { srv.clear(); return run_serve(c, samples); }, varied_ttft(), varied_e2el());
    MetricOptions o;
    o.percentiles = {50, 90, 99};
    o.goodput = {{"ttft", 250}, {"tpot", 30}};  // TTFT <= 250 ms: requests 0..3; TPOT <= 30 ms: 0..2
    o.cost_per_hour = 2.0;
    o.num_machines = 3;
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    check_varied(run, m);
    for (int i = 0; i < 10; ++i) EXPECT_NEAR(run.outputs[size_t(i)].start_time * 1000, 100.0 * (i + 1), kTolMs);
    // The last request is sent at 1.0 s and ends 684 ms later.
    EXPECT_NEAR(run.duration, 1.684, kTolMs / 1000);
    EXPECT_NEAR(m.request_throughput, 10 / run.duration, 1e-9);
    EXPECT_NEAR(m.request_goodput, 3 / run.duration, 1e-9);
    EXPECT_NEAR(m.output_throughput, 50 / run.duration, 1e-9);
    EXPECT_NEAR(m.total_token_throughput, 120 / run.duration, 1e-9);
    // $2/h x 3 machines at T tokens/s: 6 / (3600 T) * 1e6.
    EXPECT_NEAR(m.cost_per_1m_output_tokens, 6.0 / (3600.0 * 50 / run.duration) * 1e6, 1e-6);
    EXPECT_NEAR(m.cost_per_1m_total_tokens, 6.0 / (3600.0 * 120 / run.duration) * 1e6, 1e-6);
    const auto arrivals = srv.arrivals();
    ASSERT_EQ(arrivals.size(), 10u);
    for (size_t i = 1; i < arrivals.size(); ++i) EXPECT_NEAR(since(arrivals[i - 1], arrivals[i]), 100, kTolMs);
}

TEST(BenchServe, ChatEndpointMetricsMatchTheScript) {
    testing::ScriptedServer srv;
    std::vector<SampleRequest> samples;
    for (int i = 0; i < 10; ++i) samples.push_back(varied(i));
    ServeConfig c = config_for(srv);
    c.endpoint = "/v1/chat/completions";
    c.request_rate = 10;
    c.burstiness = INFINITY;
    ServeRun run = run_until_quiet([&] { srv.clear(); return run_serve(c, samples); }, varied_ttft(), varied_e2el());
    MetricOptions o;
    o.percentiles = {50, 90, 99};
    check_varied(run, compute_metrics(run, samples, nullptr, o));
}

TEST(BenchServe, PoissonArrivalsFollowTheSeededScheduleAndMetricsAreScripted) {
    testing::ScriptedServer srv;
    const int n = 30;
    std::vector<SampleRequest> samples(n, scripted(30, 10, 4));
    ServeConfig c = config_for(srv);
    c.request_rate = 20;
    c.burstiness = 1.0;
    c.seed = 42;
    ServeRun run = run_until_quiet([&] { srv.clear(); return run_serve(c, samples); }, std::vector<double>(n, 30.0), std::vector<double>(n, 60.0));
    // The schedule: seeded, non-decreasing, normalized to end at n / rate.
    ASSERT_EQ(run.arrivals.size(), size_t(n));
    EXPECT_NEAR(run.arrivals.back(), n / 20.0, 1e-9);
    std::vector<double> gaps;
    for (int i = 1; i < n; ++i) gaps.push_back(run.arrivals[size_t(i)] - run.arrivals[size_t(i) - 1]);
    EXPECT_GT(std_of(gaps), 0.3 * mean_of(gaps));  // exponential gaps, not a fixed rate
    // Requests reach the server at the scheduled offsets.
    const auto seen = srv.arrivals();
    ASSERT_EQ(seen.size(), size_t(n));
    for (int i = 0; i < n; ++i) {
        EXPECT_NEAR(run.outputs[size_t(i)].start_time, run.arrivals[size_t(i)], kTolMs / 1000);
        EXPECT_NEAR(since(seen[0], seen[size_t(i)]) / 1000, run.arrivals[size_t(i)] - run.arrivals[0], kTolMs / 1000);
    }
    MetricOptions o;
    o.percentiles = {50, 99};
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    EXPECT_EQ(m.completed, n);
    EXPECT_EQ(m.total_output, 4 * n);
    EXPECT_NEAR(m.ttft.mean, 30, kTolMs);
    EXPECT_NEAR(p(m.ttft, 99), 30, kTolMs);
    EXPECT_NEAR(m.tpot.mean, 10, 1.5);
    EXPECT_NEAR(p(m.tpot, 99), 10, kTolMs);
    EXPECT_NEAR(m.itl.median, 10, kTolMs);
    EXPECT_NEAR(m.e2el.mean, 60, kTolMs);
    EXPECT_NEAR(p(m.e2el, 99), 60, kTolMs);
    EXPECT_NEAR(run.duration, run.arrivals.back() + 0.060, kTolMs / 1000);
}

TEST(BenchServe, MaxConcurrencyHoldsRequestsBackAndTimesFromSend) {
    testing::ScriptedServer srv;
    std::vector<SampleRequest> samples(12, scripted(50, 10, 3));  // 70 ms each
    ServeConfig c = config_for(srv);
    c.max_concurrency = 3;  // infinite rate: 4 waves of 3
    ServeRun run = run_until_quiet([&] { srv.clear(); return run_serve(c, samples); }, std::vector<double>(12, 50.0), std::vector<double>(12, 70.0));
    EXPECT_EQ(srv.max_active(), 3);
    MetricOptions o;
    o.percentiles = {50, 99};
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    EXPECT_EQ(m.completed, 12);
    EXPECT_NEAR(m.ttft.mean, 50, kTolMs);  // queueing time is not part of TTFT
    EXPECT_NEAR(p(m.ttft, 99), 50, kTolMs);
    EXPECT_NEAR(m.e2el.mean, 70, kTolMs);
    EXPECT_NEAR(p(m.tpot, 50), 10, kTolMs);
    for (int i = 0; i < 12; ++i) EXPECT_NEAR(run.outputs[size_t(i)].start_time * 1000, 70.0 * (i / 3), 3 * kTolMs) << i;
    EXPECT_NEAR(run.duration, 0.280, 2 * kTolMs / 1000);
    EXPECT_EQ(m.max_concurrent_requests, 12);  // all within the first one-second bucket
}

TEST(BenchServe, FailedRequestsAreCountedAndReported) {
    testing::ScriptedServer srv;
    std::vector<SampleRequest> samples(4, scripted(20, 10, 3));
    samples[2].prompt += " status=503";
    ServeConfig c = config_for(srv);
    ServeRun run = run_serve(c, samples);
    MetricOptions o;
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    EXPECT_EQ(m.completed, 3);
    EXPECT_EQ(m.failed, 1);
    EXPECT_FALSE(run.outputs[2].success);
    EXPECT_NE(run.outputs[2].error.find("503"), std::string::npos) << run.outputs[2].error;
    EXPECT_EQ(m.output_lens[2], 0);
    EXPECT_EQ(m.total_output, 9);
}

TEST(BenchServe, ReadyCheckFailsOnADeadServer) {
    testing::ScriptedServer srv;
    ServeConfig c = config_for(srv);
    c.ready_check = true;
    std::vector<SampleRequest> samples(2, scripted(5, 5, 2));
    ServeRun run = run_serve(c, samples);
    EXPECT_EQ(srv.arrivals().size(), 3u);  // the ready check plus the two
    samples[0].prompt += " status=500";
    EXPECT_THROW(run_serve(c, samples), Error);
}

}  // namespace
}  // namespace osprey::bench
