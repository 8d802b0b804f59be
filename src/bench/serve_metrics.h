// The serving benchmark's metrics and result file, with vLLM's definitions and key names:
//   output tokens per request: usage.completion_tokens, else the tokenizer's count of the generated text, else the
//     number of streamed chunks; input tokens: the dataset's count, else usage.prompt_tokens
//   TPOT per request = (latency - ttft) / (output tokens - 1), over requests with more than one output token
//   ITL: every gap between streamed chunks, pooled over requests
//   throughputs: completed requests, output tokens and input + output tokens of completed requests per second of
//     the whole run; goodput: completed requests meeting every SLO (ttft, tpot [0 for one-token outputs], e2el;
//     value <= SLO) per second
//   cost per 1M tokens = cost per hour x machines / (tokens per second x 3600) x 1e6
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/dataset.h"
#include "bench/serve_bench.h"
#include "bench/stats.h"

namespace osprey::tokenizer {
class Tokenizer;
}

namespace osprey::bench {

struct MetricOptions {
    std::vector<double> percentiles = {99};
    std::vector<std::string> percentile_metrics = {"ttft", "tpot", "itl", "e2el"};
    std::map<std::string, double> goodput;  // "ttft"/"tpot"/"e2el" -> SLO in ms
    double cost_per_hour = 0;               // $ per machine-hour (GPU or CPU box); 0: no cost keys
    int num_machines = 1;
};

struct ServeMetrics {
    int completed = 0, failed = 0;
    int good = 0;  // completed requests meeting every goodput SLO (all completed when no SLO is set)
    int64_t total_input = 0, total_output = 0;
    double request_throughput = 0, request_goodput = 0, output_throughput = 0, total_token_throughput = 0;
    std::vector<int> input_lens, output_lens;  // per request (output 0 for failures)
    std::vector<double> ttfts, tpots, itls, e2els;  // seconds, completed requests only (tpots: output > 1)
    MetricSummary ttft, tpot, itl, e2el;            // milliseconds
    double max_output_tokens_per_s = 0;
    int max_concurrent_requests = 0;
    double cost_per_1m_output_tokens = 0, cost_per_1m_total_tokens = 0;
};

// "ttft:500" pairs -> map; throws Error(InvalidArgument) for other names or negative values.
std::map<std::string, double> parse_goodput(const std::vector<std::string>& pairs);

// $ per 1M tokens at `tokens_per_s`; 0 when either is 0.
double cost_per_million(double cost_per_hour, int num_machines, double tokens_per_s);

ServeMetrics compute_metrics(const ServeRun& run, const std::vector<SampleRequest>& samples,
                             const tokenizer::Tokenizer* tokenizer, const MetricOptions& options);

struct RunInfo {
    std::string backend = "openai";  // openai | openai-chat (vLLM's names for the two endpoints)
    std::string model_id, tokenizer_id, endpoint, dataset, base_url;
    double request_rate = 0;         // inf is written as "inf"
    double burstiness = 1;
    int max_concurrency = 0;         // 0: null
    int num_prompts = 0;
};

// vLLM's result file: run info, totals, per-request arrays and mean/median/std/pNN per metric, plus cost keys.
nlohmann::json result_json(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o);

// The human-readable table vLLM prints.
std::string format_summary(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o);

}  // namespace osprey::bench
