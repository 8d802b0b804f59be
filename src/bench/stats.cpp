#include "bench/stats.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace osprey::bench {

double mean_of(const std::vector<double>& x) {
    if (x.empty()) return 0;
    double s = 0;
    for (double v : x) s += v;
    return s / double(x.size());
}

double std_of(const std::vector<double>& x) {
    if (x.empty()) return 0;
    const double m = mean_of(x);
    double s = 0;
    for (double v : x) s += (v - m) * (v - m);
    return std::sqrt(s / double(x.size()));
}

double percentile_of(std::vector<double> x, double p) {
    if (x.empty()) return 0;
    std::sort(x.begin(), x.end());
    const double rank = p / 100.0 * double(x.size() - 1);
    const size_t lo = size_t(std::floor(rank));
    const size_t hi = std::min(lo + 1, x.size() - 1);
    const double t = rank - double(lo);
    // numpy's lerp: a + (b - a) t, evaluated from the nearer end for accuracy.
    const double a = x[lo], b = x[hi];
    return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}

double median_of(const std::vector<double>& x) { return percentile_of(x, 50); }

MetricSummary summarize(const std::vector<double>& x, const std::vector<double>& percentiles, double scale) {
    MetricSummary s;
    s.mean = mean_of(x) * scale;
    s.median = median_of(x) * scale;
    s.std = std_of(x) * scale;
    for (double p : percentiles) s.percentiles.emplace_back(p, percentile_of(x, p) * scale);
    return s;
}

std::string percentile_word(double p) {
    if (p == std::floor(p)) return fmt::format("{}", int64_t(p));
    return fmt::format("{}", p);
}

std::vector<double> parse_percentiles(const std::string& text) {
    std::vector<double> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(start, end - start);
        if (!item.empty()) {
            size_t pos = 0;
            double v = 0;
            try {
                v = std::stod(item, &pos);
            } catch (const std::exception&) {
                pos = 0;
            }
            if (pos != item.size() || !(v >= 0 && v <= 100))
                raise(ErrorCode::InvalidArgument, "--percentiles: '{}' is not a percentile in [0, 100]", item);
            out.push_back(v);
        }
        start = end + 1;
    }
    if (out.empty()) raise(ErrorCode::InvalidArgument, "--percentiles: no percentile in '{}'", text);
    return out;
}

}  // namespace osprey::bench
