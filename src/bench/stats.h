// Summary statistics of a latency sample, computed the way vLLM's `bench serve` does (numpy semantics): mean,
// median, population std (ddof 0) and percentiles by linear interpolation between order statistics
// (numpy.percentile's default). An empty sample gives 0 for every statistic (vLLM's `np.mean(x or 0)`).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace osprey::bench {

double mean_of(const std::vector<double>& x);
double std_of(const std::vector<double>& x);  // population standard deviation
// p in [0, 100]; x need not be sorted.
double percentile_of(std::vector<double> x, double p);
double median_of(const std::vector<double>& x);

struct MetricSummary {
    double mean = 0, median = 0, std = 0;
    std::vector<std::pair<double, double>> percentiles;  // (p, value)
};

// Statistics of `x` scaled by `scale` (1000: seconds -> milliseconds).
MetricSummary summarize(const std::vector<double>& x, const std::vector<double>& percentiles, double scale);

// "99" -> "99", "99.9" -> "99.9" (vLLM's p-word in result keys such as p99.9_ttft_ms).
std::string percentile_word(double p);

// "50,90,99" -> {50, 90, 99}; throws Error(InvalidArgument) on a value outside [0, 100].
std::vector<double> parse_percentiles(const std::string& text);

}  // namespace osprey::bench
