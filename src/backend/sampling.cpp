#include "backend/sampling.h"

#include "backend/backend.h"
#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace osprey::backend {

namespace {

// The key of the top-p threshold: the smallest key whose tokens are kept, i.e. of the last group of equal keys
// (in descending order, among tokens with key >= floor) whose strictly-greater weight is below `limit`.
// Sorts only as many of the largest keys as the walk needs (256, then 4x more).
uint32_t top_p_key(const std::vector<uint32_t>& key, const std::vector<float>& w, uint32_t floor, double limit) {
    std::vector<int32_t> ids;
    for (int32_t i = 0; i < int32_t(key.size()); i++)
        if (key[size_t(i)] >= floor) ids.push_back(i);
    const size_t n_all = ids.size();
    auto desc = [&](int32_t a, int32_t b) { return key[size_t(a)] > key[size_t(b)]; };
    for (size_t n = std::min<size_t>(n_all, 256);; n = std::min(n_all, n * 4)) {
        std::partial_sort(ids.begin(), ids.begin() + long(n), ids.end(), desc);
        // Keys strictly above the largest key left out are complete groups.
        const uint32_t bound = n < n_all ? key[size_t(*std::max_element(ids.begin() + long(n), ids.end(), [&](int32_t a, int32_t b) {
            return key[size_t(a)] < key[size_t(b)];
        }))] : 0;
        double above = 0.0;  // weight of the groups walked so far
        uint32_t last_kept = key[size_t(ids[0])];
        for (size_t i = 0; i < n;) {
            const uint32_t k = key[size_t(ids[i])];
            if (n < n_all && k <= bound) break;  // this group may continue past n
            if (above >= limit) return last_kept;
            last_kept = k;
            double group = 0.0;
            for (; i < n && key[size_t(ids[i])] == k; i++) group += w[size_t(ids[i])];
            above += group;
        }
        if (n == n_all) return last_kept;
    }
}

}  // namespace

int32_t sample_row(std::span<const float> logits, const SamplingRow& p) {
    const int32_t V = int32_t(logits.size());
    if (V <= 0) return 0;
    if (!(p.temperature > 0.0f)) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (logits[size_t(i)] > logits[size_t(best)]) best = i;
        return best;
    }
    const float inv_t = 1.0f / p.temperature;
    // Per-thread scratch: this runs once per sampled token, so no vocabulary-sized allocations per call.
    thread_local std::vector<uint32_t> key, sorted;
    thread_local std::vector<float> w;
    key.resize(size_t(V));
    float m = -std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < V; i++) {
        const float s = logits[size_t(i)] * inv_t;
        key[size_t(i)] = float_order_key(s);
        m = std::max(m, s);
    }
    uint32_t tau = 0;
    if (p.top_k > 0 && p.top_k < V) {  // the k-th largest key
        sorted.assign(key.begin(), key.end());
        std::nth_element(sorted.begin(), sorted.begin() + (p.top_k - 1), sorted.end(), std::greater<uint32_t>());
        tau = sorted[size_t(p.top_k - 1)];
    }
    w.assign(size_t(V), 0.0f);
    for (int32_t i = 0; i < V; i++)
        if (key[size_t(i)] >= tau) w[size_t(i)] = std::exp(logits[size_t(i)] * inv_t - m);
    if (p.top_p < 1.0f) {
        double z = 0.0;
        for (float v : w) z += v;
        tau = std::max(tau, top_p_key(key, w, tau, double(p.top_p) * z));
    }
    if (p.min_p > 0.0f) tau = std::max(tau, float_order_key(m + std::log(p.min_p)));

    double total = 0.0;  // sums in double: with 10^5 terms a float running sum drifts by more than a token's weight
    int32_t last = 0;
    for (int32_t i = 0; i < V; i++)
        if (key[size_t(i)] >= tau) total += w[size_t(i)], last = i;
    const double target = double(sampling_uniform(p.seed, p.counter)) * total;
    double run = 0.0;
    for (int32_t i = 0; i < V; i++) {
        if (key[size_t(i)] < tau) continue;
        run += w[size_t(i)];
        if (run > target) return i;
    }
    return last;
}

void apply_penalties_row(float* logits, int64_t V, const int32_t* entries, int64_t n, const float* params) {
    if (params[0] == 1.0f && params[1] == 0.0f && params[2] == 0.0f) return;
    for (int64_t i = 0; i < n; i++) apply_penalties_entry(logits, V, entries[2 * i], entries[2 * i + 1], params);
}

float row_log_sum_exp(std::span<const float> logits) {
    float m = -std::numeric_limits<float>::infinity();
    for (float v : logits) m = std::max(m, v);
    if (!std::isfinite(m)) return m;
    double s = 0;
    for (float v : logits) s += std::exp(double(v - m));
    return m + float(std::log(s));
}

void row_top_logprobs(int32_t* ids, float* logprobs, std::span<const float> logits, float lse, int n) {
    if (n <= 0) return;
    // A sorted list of the best n keys so far (descending), by insertion.
    thread_local std::vector<uint64_t> best;
    best.assign(size_t(n), 0);
    for (size_t i = 0; i < logits.size(); i++) {
        uint64_t k = logit_rank_key(logits[i], int32_t(i));
        if (k <= best.back()) continue;
        for (uint64_t& b : best)
            if (k > b) std::swap(k, b);
    }
    const int n_real = int(std::min<size_t>(size_t(n), logits.size()));
    for (int j = 0; j < n; j++) {
        if (j >= n_real) {
            ids[j] = -1, logprobs[j] = -std::numeric_limits<float>::infinity();
            continue;
        }
        ids[j] = int32_t(0xffffffffu - uint32_t(best[size_t(j)]));
        logprobs[j] = logits[size_t(ids[j])] - lse;
    }
}

void Backend::unsupported_op(const char* op) const {  // here rather than backend.cpp: the ops it guards live here
    raise(ErrorCode::Unsupported, "backend {} does not implement {}", name(), op);
}

}  // namespace osprey::backend
