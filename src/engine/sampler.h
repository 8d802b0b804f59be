// Sampler: turns one row of logits into a token, applying penalties, temperature and truncation (top-k, top-p,
// min-p) in the order HF transformers and vLLM use: penalties, temperature, top-k, top-p, min-p, then sample.
// After the penalties, the draw is backend::sample_row (backend/sampling.h) with the sequence's seed and the
// number of tokens generated so far as counter: the token a backend's sample_rows draws for the same row, so
// results depend neither on the batch nor on where the row is sampled.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/sampling.h"
#include "engine/sampling_params.h"

namespace osprey::engine {

struct TokenLogprob {
    int32_t token = 0;
    float logprob = 0.0f;
};

struct SampledToken {
    int32_t token = 0;
    float logprob = 0.0f;                 // of the chosen token under the model's (unpenalised) distribution
    std::vector<TokenLogprob> top;        // top n_logprobs alternatives, best first
};

class Sampler {
  public:
    // seed: the request's seed, or a fresh one drawn by the caller when the request gave none.
    Sampler(const SamplingParams& params, uint64_t seed);

    // logits [n_vocab] (modified in place); history: prompt + generated tokens (for penalties).
    SampledToken sample(std::span<float> logits, std::span<const int32_t> prompt, std::span<const int32_t> generated);

    // The row a backend samples this sequence's next token with (when params.device_samplable()).
    backend::SamplingRow device_row(uint64_t n_generated) const;

  private:
    SamplingParams params_;
    uint64_t seed_;
    std::vector<int32_t> counts_;      // scratch: occurrences per token
    std::vector<int32_t> candidates_;  // scratch
};

// log-softmax helpers shared with evaluation code (backend::row_log_sum_exp: the device ops' definition)
float log_sum_exp(std::span<const float> logits);

}  // namespace osprey::engine
