// Request arrival times of a serving benchmark, as vLLM's `bench serve` draws them: inter-arrival gaps from a gamma
// distribution with shape = burstiness and mean 1/rate (burstiness 1: a Poisson process; infinite burstiness: a
// fixed rate), summed, then scaled so that the last request arrives at exactly n/rate (vLLM's normalization, which
// keeps throughput stable across seeds). An infinite rate sends everything at t = 0.
#pragma once

#include <cstdint>
#include <vector>

namespace osprey::bench {

// Seconds from the start of the benchmark at which each of n requests is sent (non-decreasing).
// Throws Error(InvalidArgument) for rate <= 0 or burstiness <= 0.
std::vector<double> arrival_times(int n, double request_rate, double burstiness, uint64_t seed);

}  // namespace osprey::bench
