// Token sampling, defined once for every backend (Backend::sample_rows) and the engine's host sampler, so a request
// draws the same way wherever its row is sampled; also the penalties and log-probabilities around it
// (Backend::apply_penalties, row_logprobs, token_logprobs). Host and device code (the CUDA kernels include this
// header).
//
// For a row of logits l over V tokens with temperature T > 0, s_i = l_i * (1 / T), m = max s, w_i = exp(s_i - m):
//   top-k  keeps i iff fewer than k tokens have s_j > s_i                       (ties with the k-th all kept)
//   top-p  keeps i iff the weight of top-k-kept tokens with s_j > s_i is below top_p * (their total weight)
//   min-p  keeps i iff s_i >= m + ln(min_p)                                    (p_i >= min_p * p_max)
// Each rule keeps every token at or above a threshold, so the kept set is {s_i >= tau}. The draw u in [0, 1) comes
// from (seed, counter) alone; the token is the first id (ascending) at which the running weight of kept tokens
// exceeds u * (their total weight). T <= 0 is greedy: the first maximum of l.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define OSP_HOST_DEVICE __host__ __device__
#else
#define OSP_HOST_DEVICE
#endif

namespace osprey::backend {

// One row's parameters; sample_rows reads an array of them ([R, 8] of I32 on the device).
struct SamplingRow {
    float temperature = 0.0f;  // <= 0: greedy
    int32_t top_k = 0;         // <= 0: off
    float top_p = 1.0f;        // >= 1: off
    float min_p = 0.0f;        // <= 0: off
    uint64_t seed = 0;         // the sequence's random stream
    uint64_t counter = 0;      // the draw's index in it (tokens generated so far)
};
static_assert(sizeof(SamplingRow) == 32, "SamplingRow is uploaded as 8 int32 per row");

OSP_HOST_DEVICE inline uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// The uniform draw of (seed, counter), a multiple of 2^-24 in [0, 1).
OSP_HOST_DEVICE inline float sampling_uniform(uint64_t seed, uint64_t counter) {
    return float(splitmix64(seed ^ splitmix64(counter)) >> 40) * (1.0f / 16777216.0f);
}

// Order-preserving map of a float to an unsigned key (larger float, larger key; -0 below +0; no NaN expected).
OSP_HOST_DEVICE inline uint32_t float_order_key(float f) {
    uint32_t u;
    static_assert(sizeof(u) == sizeof(f));
#if defined(__CUDA_ARCH__)
    u = __float_as_uint(f);
#else
    __builtin_memcpy(&u, &f, 4);
#endif
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Row-order key of a logit for the top-n log-probabilities: larger logit first, then the smaller id; -0 ties +0
// (the host sampler compares with > and ==). Unique per (value, id); 0 only for the all-ones NaN.
OSP_HOST_DEVICE inline uint64_t logit_rank_key(float f, int32_t id) {
    return (uint64_t(float_order_key(f == 0.0f ? 0.0f : f)) << 32) | uint64_t(0xffffffffu - uint32_t(id));
}

// Penalties (Backend::apply_penalties), one row: the engine's host sampler's rule, the same float operations in the
// same order per token. entries holds n pairs (token id, count among the generated tokens), ids distinct; params =
// (repetition, presence, frequency, unused). For each entry with an id in [0, V):
//   if repetition != 1:                 l = l > 0 ? l / repetition : l * repetition
//   if (presence or frequency != 0) and count > 0:  l -= frequency * float(count) + presence
// Each operation rounds once (the CUDA kernel uses the _rn intrinsics, so nothing is fused into an fma).
OSP_HOST_DEVICE inline void apply_penalties_entry(float* logits, int64_t V, int32_t id, int32_t count,
                                                  const float* params) {
    const float rep = params[0], presence = params[1], frequency = params[2];
    if (id < 0 || id >= V) return;
    float l = logits[id];
#if defined(__CUDA_ARCH__)
    if (rep != 1.0f) l = l > 0 ? __fdiv_rn(l, rep) : __fmul_rn(l, rep);
    if ((presence != 0.0f || frequency != 0.0f) && count > 0)
        l = __fsub_rn(l, __fadd_rn(__fmul_rn(frequency, float(count)), presence));
#else
    if (rep != 1.0f) l = l > 0 ? l / rep : l * rep;
    if ((presence != 0.0f || frequency != 0.0f) && count > 0) l -= frequency * float(count) + presence;
#endif
    logits[id] = l;
}

}  // namespace osprey::backend

#if !defined(__CUDACC__)
#include <span>

namespace osprey::backend {

// The reference: the token sample_rows picks for one row (see the definition above).
int32_t sample_row(std::span<const float> logits, const SamplingRow& p);

// Penalties on one row of V logits: apply_penalties_entry for each of the n (id, count) pairs in entries [n, 2].
void apply_penalties_row(float* logits, int64_t V, const int32_t* entries, int64_t n, const float* params);

// The log-sum-exp of a row (also the engine's log_sum_exp): m = max (returned as is when not finite), then
// m + float(log(sum of exp(double(l - m)))) with the sum in double.
float row_log_sum_exp(std::span<const float> logits);

// The n largest logits of a row, best first (ties: the smaller id first), with logprob = logit - lse; slots past
// the row's length get id -1 and logprob -inf. ids and logprobs hold n values each.
void row_top_logprobs(int32_t* ids, float* logprobs, std::span<const float> logits, float lse, int n);

}  // namespace osprey::backend
#endif
