// Prometheus metrics of the server: request counts by HTTP status, latency histograms from the server's own
// timings, and the engine's gauges/counters (EngineStats) rendered in the Prometheus text format (0.0.4).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace osprey::server {

class Histogram {
  public:
    explicit Histogram(std::vector<double> upper_bounds);  // ascending; +Inf is implicit
    void observe(double value);
    // name_bucket{le="..."} (cumulative), name_sum, name_count.
    void render(std::string& out, const std::string& name, const std::string& help) const;

  private:
    std::vector<double> bounds_;
    std::vector<uint64_t> counts_;  // [bounds + 1], per bucket (not cumulative)
    double sum_ = 0;
    uint64_t count_ = 0;
};

class Metrics {
  public:
    Metrics();
    // Thread-safe.
    void count_response(int http_status);
    // One finished generation: seconds to the first token, per output token after it, end to end.
    void observe_request(double ttft_s, double tpot_s, double e2e_s, bool has_tpot);
    std::string render(const engine::EngineStats& stats) const;

  private:
    mutable std::mutex mutex_;
    std::map<int, uint64_t> responses_;  // HTTP status -> count
    Histogram ttft_, tpot_, e2e_;
};

// A Prometheus sample value: integers without a fraction, others with up to 17 significant digits.
std::string prometheus_number(double v);

}  // namespace osprey::server
