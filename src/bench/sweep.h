// `osprey bench sweep`: one serving benchmark per load level (request rates or concurrency limits), the
// throughput-latency curve across them, and the highest load that still meets the goodput SLOs: a level meets them
// when the fraction of all its requests that completed within every SLO is at least `slo_attainment`.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/serve_bench.h"
#include "bench/serve_metrics.h"

namespace osprey::bench {

struct SweepPoint {
    double request_rate = 0;
    int max_concurrency = 0;
    ServeRun run;
    ServeMetrics metrics;
    double slo_attainment = 0;  // good / requests
    bool meets_slo = false;
};

struct SweepResult {
    std::string load_kind;  // "request_rate" or "max_concurrency"
    std::vector<SweepPoint> points;
    int best = -1;          // index of the highest load meeting the SLOs; -1: none (or no SLOs)
};

// `rates` or `concurrencies` (exactly one non-empty) give the levels; `on_point` (may be null) is called after each.
SweepResult run_sweep(const ServeConfig& base, const std::vector<double>& rates, const std::vector<int>& concurrencies,
                      const std::vector<SampleRequest>& samples, const tokenizer::Tokenizer* tokenizer,
                      const MetricOptions& options, double slo_attainment,
                      const std::function<void(const SweepPoint&)>& on_point);

// {"load_kind", "points": [vLLM result of each level...], "best_index", "best_request_rate"/"best_max_concurrency"}
nlohmann::json sweep_json(const SweepResult& sweep, const RunInfo& info, const MetricOptions& options);

// "1,2,4,inf" -> {1, 2, 4, inf}; "1,4,16" -> {1, 4, 16}. Throw Error(InvalidArgument).
std::vector<double> parse_rates(const std::string& text);
std::vector<int> parse_concurrencies(const std::string& text);
double parse_rate(const std::string& text);  // "inf" or a positive number

// HTML reports: latency CDFs for one run; throughput and P99 latency against load for a sweep.
std::string serve_report_html(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o);
std::string sweep_report_html(const SweepResult& sweep, const RunInfo& info, const MetricOptions& o);

}  // namespace osprey::bench
