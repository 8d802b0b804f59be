#include "bench/arrivals.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace osprey::bench {

std::vector<double> arrival_times(int n, double request_rate, double burstiness, uint64_t seed) {
    if (!(request_rate > 0)) raise(ErrorCode::InvalidArgument, "--request-rate must be positive or inf, got {}", request_rate);
    if (!(burstiness > 0)) raise(ErrorCode::InvalidArgument, "--burstiness must be positive, got {}", burstiness);
    std::vector<double> t(size_t(std::max(n, 0)), 0.0);
    if (n <= 0 || std::isinf(request_rate)) return t;
    std::mt19937_64 rng(seed);
    for (int i = 0; i < n; ++i) {
        double gap = 1.0 / request_rate;
        if (!std::isinf(burstiness)) {
            std::gamma_distribution<double> gamma(burstiness, 1.0 / (request_rate * burstiness));
            gap = gamma(rng);
        }
        t[size_t(i)] = gap + (i > 0 ? t[size_t(i) - 1] : 0.0);
    }
    if (t.back() > 0) {
        const double factor = (double(n) / request_rate) / t.back();
        for (double& v : t) v *= factor;
    }
    return t;
}

}  // namespace osprey::bench
