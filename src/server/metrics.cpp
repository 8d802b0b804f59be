#include "server/metrics.h"

#include <cmath>

#include <fmt/format.h>

namespace osprey::server {

std::string prometheus_number(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (std::isnan(v)) return "NaN";
    if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", int64_t(v));
    return fmt::format("{}", v);  // shortest round-trip form
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
    size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += value;
    ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cumulative += counts_[i];
        out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, prometheus_number(bounds_[i]), cumulative);
    }
    cumulative += counts_.back();
    out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
    out += fmt::format("{}_sum {}\n{}_count {}\n", name, prometheus_number(sum_), name, count_);
}

Metrics::Metrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0}),
      tpot_({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0}),
      e2e_({0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
            960.0}) {}

void Metrics::count_response(int http_status) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++responses_[http_status];
}

void Metrics::observe_request(double ttft_s, double tpot_s, double e2e_s, bool has_tpot) {
    std::lock_guard<std::mutex> lock(mutex_);
    ttft_.observe(ttft_s);
    if (has_tpot) tpot_.observe(tpot_s);
    e2e_.observe(e2e_s);
}

namespace {

void metric(std::string& out, const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, prometheus_number(value));
}

}  // namespace

std::string Metrics::render(const engine::EngineStats& s) const {
    std::string out;
    std::lock_guard<std::mutex> lock(mutex_);
    out += "# HELP osprey_requests_total HTTP responses by status code.\n# TYPE osprey_requests_total counter\n";
    for (const auto& [status, count] : responses_)
        out += fmt::format("osprey_requests_total{{status=\"{}\"}} {}\n", status, count);
    metric(out, "osprey_prompt_tokens_total", "counter", "Prompt tokens processed.", double(s.n_prompt_tokens));
    metric(out, "osprey_generation_tokens_total", "counter", "Tokens generated.", double(s.n_generation_tokens));
    ttft_.render(out, "osprey_time_to_first_token_seconds", "Time from request arrival to its first token.");
    tpot_.render(out, "osprey_time_per_output_token_seconds", "Mean time per output token after the first.");
    e2e_.render(out, "osprey_e2e_request_latency_seconds", "Time from request arrival to its last token.");
    metric(out, "osprey_num_requests_waiting", "gauge", "Requests waiting to be scheduled.", s.n_waiting);
    metric(out, "osprey_num_requests_running", "gauge", "Requests running.", s.n_running);
    metric(out, "osprey_kv_cache_blocks_used", "gauge", "KV cache blocks in use.", s.n_kv_blocks_used);
    metric(out, "osprey_kv_cache_blocks_total", "gauge", "KV cache blocks in the pool.", s.n_kv_blocks);
    metric(out, "osprey_kv_cache_usage_ratio", "gauge", "Fraction of KV cache blocks in use.",
           s.n_kv_blocks > 0 ? double(s.n_kv_blocks_used) / s.n_kv_blocks : 0.0);
    metric(out, "osprey_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.",
           double(s.prefix_cache_queries));
    metric(out, "osprey_prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.",
           double(s.prefix_cache_hits));
    metric(out, "osprey_prefix_cache_hit_rate", "gauge", "Prefix cache hits / queries since start.",
           s.prefix_cache_queries > 0 ? double(s.prefix_cache_hits) / double(s.prefix_cache_queries) : 0.0);
    metric(out, "osprey_num_preemptions_total", "counter", "Sequences preempted (KV blocks freed, recomputed later).",
           double(s.n_preemptions));
    metric(out, "osprey_kv_cache_slots_allocated_total", "counter",
           "Token slots in blocks held by running sequences, summed over engine steps.", double(s.kv_slots_allocated));
    metric(out, "osprey_kv_cache_slots_used_total", "counter",
           "Of those, slots holding a computed token, summed over engine steps.", double(s.kv_slots_used));
    metric(out, "osprey_kv_cache_waste_ratio", "gauge", "Allocated but unused KV slots / allocated, since start.",
           s.kv_slots_allocated > 0 ? 1.0 - double(s.kv_slots_used) / double(s.kv_slots_allocated) : 0.0);
    return out;
}

}  // namespace osprey::server
