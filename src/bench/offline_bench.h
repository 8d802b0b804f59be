// `osprey bench offline`: throughput and latency of the engine in process (no HTTP), like vLLM's `bench throughput`:
// every request is submitted at t = 0 (greedy, ignore_eos unless disabled, so each produces exactly its output
// length) and the engine runs them under its scheduling policy (continuous or static batching).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "bench/dataset.h"
#include "bench/stats.h"
#include "engine/engine.h"

namespace osprey::bench {

struct OfflineConfig {
    std::string model;            // GGUF file or Hugging Face folder; empty: the default model
    int threads = 0;              // CPU threads (0: one per core)
    DatasetOptions dataset;       // random: random_input_len / random_output_len; sharegpt: path
    int output_len = 0;           // > 0: overrides every request's output length
    bool ignore_eos = true;
    bool enforce_eager = false;   // no op graphs for decode steps
    engine::EngineConfig engine;
    std::vector<double> percentiles = {50, 90, 99};
    bool progress = false;
};

struct OfflineResult {
    std::string model;
    std::string scheduling;
    int num_requests = 0, failed = 0;
    double elapsed = 0, load_seconds = 0;            // s
    int64_t prompt_tokens = 0, output_tokens = 0;
    double requests_per_second = 0, output_tokens_per_second = 0, total_tokens_per_second = 0;
    std::vector<double> ttfts, e2els, tpots;         // s
    MetricSummary ttft, tpot, e2el;                  // ms
    engine::EngineStats stats;
    int max_num_batched_tokens = 0;  // the engine's token budget per step (the device's default when not set)
};

// Throws Error for a bad model, options or a request the engine rejects.
// Runs on `backend` (the CPU or a GPU backend, chosen by the caller).
OfflineResult run_offline(const OfflineConfig& config, backend::Backend& backend);

// vLLM's throughput keys (elapsed_time, num_requests, total_num_tokens, requests_per_second, tokens_per_second)
// plus output tokens per second and latency statistics.
nlohmann::json offline_json(const OfflineResult& r, const OfflineConfig& config);
std::string format_offline(const OfflineResult& r);

}  // namespace osprey::bench
