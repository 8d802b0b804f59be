// The result file carries every documented key (vLLM's names), the sweep finds the highest load meeting the SLOs,
// and the HTML reports are self-contained and render in headless Chromium with the expected chart series.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "bench/serve_bench.h"
#include "bench/serve_metrics.h"
#include "bench/sweep.h"
#include "unit/bench/scripted_server.h"

namespace osprey::bench {
namespace {

namespace fs = std::filesystem;

std::vector<SampleRequest> samples_of(int n, const std::string& script) {
    std::vector<SampleRequest> v(static_cast<size_t>(n));
    for (SampleRequest& s : v) s.prompt = script, s.expected_output_len = 4;
    return v;
}

ServeConfig config_for(const testing::ScriptedServer& srv) {
    ServeConfig c;
    c.base_url = "http://127.0.0.1:" + std::to_string(srv.port());
    c.model = "scripted";
    c.ready_check = false;
    return c;
}

RunInfo info_for(const ServeConfig& c, int n) {
    RunInfo info;
    info.model_id = c.model;
    info.tokenizer_id = "none";
    info.endpoint = c.endpoint;
    info.base_url = c.base_url;
    info.dataset = "scripted";
    info.request_rate = c.request_rate;
    info.burstiness = c.burstiness;
    info.max_concurrency = c.max_concurrency;
    info.num_prompts = n;
    return info;
}

TEST(BenchResult, JsonCarriesEveryDocumentedKey) {
    testing::ScriptedServer srv;
    auto samples = samples_of(6, "first=20 gap=5 n=4");
    samples[5].prompt += " status=500";
    ServeConfig c = config_for(srv);
    c.max_concurrency = 2;
    ServeRun run = run_serve(c, samples);
    MetricOptions o;
    o.percentiles = {50, 90, 95, 99, 99.9};
    o.goodput = {{"ttft", 1000}, {"tpot", 1000}, {"e2el", 5000}};
    o.cost_per_hour = 1.5;
    o.num_machines = 2;
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    const nlohmann::json j = result_json(info_for(c, 6), run, m, o);
    const char* keys[] = {"date", "backend", "model_id", "tokenizer_id", "num_prompts", "request_rate", "burstiness",
                          "max_concurrency", "duration", "completed", "failed", "total_input_tokens",
                          "total_output_tokens", "request_throughput", "request_goodput", "output_throughput",
                          "total_token_throughput", "input_lens", "output_lens", "ttfts", "itls", "generated_texts",
                          "errors", "max_output_tokens_per_s", "max_concurrent_requests", "cost_per_1m_output_tokens",
                          "cost_per_1m_total_tokens", "cost_per_hour", "num_gpus"};
    for (const char* k : keys) EXPECT_TRUE(j.contains(k)) << k;
    for (const char* metric : {"ttft", "tpot", "itl", "e2el"}) {
        for (const char* stat : {"mean", "median", "std"})
            EXPECT_TRUE(j.contains(std::string(stat) + "_" + metric + "_ms")) << stat << " " << metric;
        for (const char* p : {"p50", "p90", "p95", "p99", "p99.9"})
            EXPECT_TRUE(j.contains(std::string(p) + "_" + metric + "_ms")) << p << " " << metric;
    }
    EXPECT_EQ(j["request_rate"], "inf");
    EXPECT_EQ(j["max_concurrency"], 2);
    EXPECT_EQ(j["completed"], 5);
    EXPECT_EQ(j["failed"], 1);
    EXPECT_EQ(j["total_output_tokens"], 20);
    EXPECT_EQ(j["total_input_tokens"], 35);
    EXPECT_EQ(j["ttfts"].size(), 6u);
    EXPECT_EQ(j["itls"][0].size(), 3u);
    EXPECT_EQ(j["generated_texts"][0], "t0 t1 t2 t3 ");
    EXPECT_NE(j["errors"][5].get<std::string>(), "");
    EXPECT_EQ(j["errors"][0], "");
    EXPECT_EQ(j["output_lens"], (std::vector<int>{4, 4, 4, 4, 4, 0}));
    EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), 5 / run.duration);
    EXPECT_DOUBLE_EQ(j["mean_ttft_ms"].get<double>(), m.ttft.mean);
    EXPECT_DOUBLE_EQ(j["cost_per_1m_output_tokens"].get<double>(),
                     1.5 * 2 / (20 / run.duration * 3600) * 1e6);
}

// First token after 20 ms plus 30 ms per other open stream: one at a time always meets TTFT <= 60 ms, two at a time
// (20, 50 ms) too; four at a time, the first wave gets 20, 50, 80, 110 ms and every later request arrives with three
// others open (110 ms): 2 of 8 requests meet the SLO.
TEST(BenchSweep, FindsTheHighestConcurrencyMeetingTheSlos) {
    testing::ScriptedServer srv;
    auto samples = samples_of(8, "first=20 per_active=30 gap=5 n=3");
    ServeConfig c = config_for(srv);
    MetricOptions o;
    o.goodput = {{"ttft", 65}};
    int n_points = 0;
    SweepResult s = run_sweep(c, {}, {1, 2, 4}, samples, nullptr, o, 0.9, [&](const SweepPoint&) { ++n_points; });
    EXPECT_EQ(n_points, 3);
    ASSERT_EQ(s.points.size(), 3u);
    EXPECT_EQ(s.load_kind, "max_concurrency");
    EXPECT_TRUE(s.points[0].meets_slo);
    EXPECT_TRUE(s.points[1].meets_slo);
    EXPECT_FALSE(s.points[2].meets_slo);
    EXPECT_NEAR(s.points[2].slo_attainment, 0.25, 1e-9);
    EXPECT_EQ(s.best, 1);
    const nlohmann::json j = sweep_json(s, info_for(c, 8), o);
    EXPECT_EQ(j["best_max_concurrency"], 2);
    EXPECT_EQ(j["points"].size(), 3u);
    EXPECT_EQ(j["points"][2]["max_concurrency"], 4);
}

std::string find_chromium() {
    if (const char* env = std::getenv("OSPREY_CHROMIUM")) return env;
    for (const char* name : {"chromium", "chromium-browser", "google-chrome", "chrome"}) {
        const std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
        if (std::system(cmd.c_str()) == 0) return name;
    }
    return "";
}

std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
}

// id -> data-points of every <path class="series"> in the DOM.
std::map<std::string, int> series_in(const std::string& dom) {
    std::map<std::string, int> out;
    std::regex re("<path id=\"series-([^\"]+)\" class=\"series\" data-points=\"(\\d+)\"");
    for (auto it = std::sregex_iterator(dom.begin(), dom.end(), re); it != std::sregex_iterator(); ++it)
        out[(*it)[1]] = std::stoi((*it)[2]);
    return out;
}

int count_of(const std::string& text, const std::string& needle) {
    int n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

TEST(BenchReport, HtmlRendersInHeadlessChromiumWithTheExpectedSeries) {
    testing::ScriptedServer srv;
    auto samples = samples_of(6, "first=15 gap=5 n=4");
    samples[0].prompt = "first=15 gap=5 n=1";  // one token: no TPOT for this request
    ServeConfig c = config_for(srv);
    MetricOptions o;
    o.percentiles = {50, 99};
    o.goodput = {{"ttft", 1000}};
    ServeRun run = run_serve(c, samples);
    ServeMetrics m = compute_metrics(run, samples, nullptr, o);
    const std::string serve_html = serve_report_html(info_for(c, 6), run, m, o);
    SweepResult s = run_sweep(c, {50, INFINITY}, {}, samples, nullptr, o, 0.9, nullptr);
    const std::string sweep_html = sweep_report_html(s, info_for(c, 6), o);
    for (const std::string* html : {&serve_html, &sweep_html}) {
        EXPECT_EQ(html->find("<script"), std::string::npos);  // self-contained: no scripts, nothing fetched
        EXPECT_EQ(html->find("src="), std::string::npos);
        EXPECT_EQ(html->find("<link"), std::string::npos);
    }
    const fs::path dir = fs::temp_directory_path() / ("osprey_bench_report_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::ofstream(dir / "serve.html") << serve_html;
    std::ofstream(dir / "sweep.html") << sweep_html;

    const std::string chromium = find_chromium();
    if (chromium.empty()) GTEST_SKIP() << "chromium not installed (apt-get install chromium); DOM not checked";
    auto dump = [&](const fs::path& f) {
        return run_capture(chromium + " --headless --no-sandbox --disable-gpu --dump-dom 'file://" + f.string() +
                           "' 2>/dev/null");
    };
    const std::string serve_dom = dump(dir / "serve.html");
    ASSERT_NE(serve_dom.find("<svg id=\"chart-cdf-ttft\""), std::string::npos) << serve_dom.substr(0, 500);
    auto series = series_in(serve_dom);
    EXPECT_EQ(series["ttft"], 6);
    EXPECT_EQ(series["tpot"], 5);
    EXPECT_EQ(series["e2el"], 6);
    EXPECT_EQ(series["itl"], 15);  // 5 requests x 3 gaps
    for (const char* id : {"chart-cdf-tpot", "chart-cdf-e2el", "chart-cdf-itl"})
        EXPECT_NE(serve_dom.find(std::string("<svg id=\"") + id + "\""), std::string::npos) << id;

    const std::string sweep_dom = dump(dir / "sweep.html");
    ASSERT_NE(sweep_dom.find("<svg id=\"chart-sweep-throughput\""), std::string::npos);
    ASSERT_NE(sweep_dom.find("<svg id=\"chart-sweep-latency\""), std::string::npos);
    series = series_in(sweep_dom);
    for (const char* id : {"throughput-output", "throughput-requests", "p99-ttft", "p99-tpot", "p99-e2el"})
        EXPECT_EQ(series[id], 2) << id;
    EXPECT_EQ(series["ttft-0"], 6);
    EXPECT_EQ(series["ttft-1"], 6);
    EXPECT_EQ(count_of(sweep_dom, "class=\"point\""), 10);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace osprey::bench
