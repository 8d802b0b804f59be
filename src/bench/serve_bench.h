// The serving benchmark's load generator: sends the sampled requests to an OpenAI-compatible server at their arrival
// times (see arrivals.h), at most max_concurrency at once (later arrivals wait, FIFO, and their clock starts when
// they are sent, as with vLLM's semaphore), all from one event loop, and records per request what vLLM's
// RequestFuncOutput records:
//   ttft      request sent -> first streamed chunk carrying a choice (text may be empty)
//   itl       gaps between consecutive such chunks
//   latency   request sent -> last such chunk (completions) or last data chunk (chat, where usage arrives last)
//   output_tokens from `usage.completion_tokens` (the request asks for stream_options.include_usage)
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "bench/dataset.h"

namespace osprey::bench {

struct RequestResult {
    bool success = false;
    std::string error;
    std::string generated_text;
    double start_time = 0;       // s after the benchmark started, when the request was sent
    double ttft = 0;             // s
    double latency = 0;          // s
    std::vector<double> itl;     // s
    int output_tokens = 0;       // usage.completion_tokens; 0 when the server sent none
    int usage_prompt_tokens = -1;
    int n_chunks = 0;            // chunks carrying a choice
};

struct ServeConfig {
    std::string base_url = "http://127.0.0.1:8000";
    std::string endpoint = "/v1/completions";  // or /v1/chat/completions
    std::string model;
    std::string api_key;
    double request_rate = std::numeric_limits<double>::infinity();
    double burstiness = 1.0;
    int max_concurrency = 0;  // 0: no limit
    bool ignore_eos = false;
    uint64_t seed = 0;
    bool ready_check = true;  // one request before the run (not counted); its failure aborts the benchmark
    bool progress = false;    // live progress line on stderr
    double request_timeout_s = 6 * 3600.0;
};

struct ServeRun {
    std::vector<RequestResult> outputs;  // in dataset order
    std::vector<double> arrivals;        // scheduled send times (s)
    double duration = 0;                 // s, from the start to the last response
};

bool is_chat_endpoint(const std::string& endpoint);

// The JSON body vLLM's request functions send for one sample.
std::string request_body(const ServeConfig& config, const SampleRequest& sample);

// Throws Error(InvalidArgument) for bad options, Error(Io) when the ready check fails.
ServeRun run_serve(const ServeConfig& config, const std::vector<SampleRequest>& samples);

}  // namespace osprey::bench
