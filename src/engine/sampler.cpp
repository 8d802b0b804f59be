#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace osprey::engine {

void SamplingParams::validate() const {
    auto bad = [](const char* field, const std::string& why) {
        raise(ErrorCode::InvalidArgument, "'{}' {}", field, why);
    };
    if (!(temperature >= 0.0f) || temperature > 100.0f) bad("temperature", "must be between 0 and 100");
    if (top_k < 0) bad("top_k", "must be >= 0");
    if (!(top_p > 0.0f && top_p <= 1.0f)) bad("top_p", "must be in (0, 1]");
    if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p", "must be in [0, 1]");
    if (!(repetition_penalty > 0.0f) || repetition_penalty > 100.0f) bad("repetition_penalty", "must be in (0, 100]");
    if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) bad("presence_penalty", "must be in [-2, 2]");
    if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) bad("frequency_penalty", "must be in [-2, 2]");
    if (n_logprobs > 20) bad("top_logprobs", "must be at most 20");
    if (max_tokens < 1) bad("max_tokens", "must be at least 1");
}

float log_sum_exp(std::span<const float> logits) { return backend::row_log_sum_exp(logits); }

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : params_(params), seed_(seed) {}

backend::SamplingRow Sampler::device_row(uint64_t n_generated) const {
    backend::SamplingRow r;
    r.temperature = params_.greedy() ? 0.0f : params_.temperature;
    r.top_k = params_.top_k;
    r.top_p = params_.top_p;
    r.min_p = params_.min_p;
    r.seed = seed_;
    r.counter = n_generated;
    return r;
}

SampledToken Sampler::sample(std::span<float> logits, std::span<const int32_t> prompt,
                             std::span<const int32_t> generated) {
    const int n_vocab = int(logits.size());
    SampledToken out;

    // Log-probabilities are reported under the raw model distribution (as OpenAI and vLLM do by default); the
    // normaliser costs a pass of exp over the vocabulary, so it is taken only when logprobs were asked for.
    const float lse = params_.n_logprobs >= 0 ? log_sum_exp(logits) : 0.0f;
    auto raw_logprob = [&](int32_t t) { return logits[size_t(t)] - lse; };
    if (params_.n_logprobs > 0) {
        const int n = std::min(params_.n_logprobs, n_vocab);
        candidates_.resize(size_t(n_vocab));
        std::iota(candidates_.begin(), candidates_.end(), 0);
        std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(), [&](int32_t a, int32_t b) {
            return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
        });
        for (int i = 0; i < n; i++) out.top.push_back({candidates_[size_t(i)], raw_logprob(candidates_[size_t(i)])});
    }
    std::vector<float> raw_copy;  // only when the chosen token's raw logprob is needed after penalties
    const bool need_raw = params_.n_logprobs >= 0;
    if (need_raw) raw_copy.assign(logits.begin(), logits.end());

    // Penalties over the history.
    const bool rep = params_.repetition_penalty != 1.0f;
    const bool pres = params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
    if (rep || pres) {
        // OpenAI penalties count generated tokens only; the repetition penalty covers prompt and output.
        counts_.assign(size_t(n_vocab), 0);
        for (int32_t t : generated)
            if (t >= 0 && t < n_vocab) counts_[size_t(t)]++;
        if (rep) {
            std::vector<char> seen(size_t(n_vocab), 0);
            for (auto toks : {prompt, generated})
                for (int32_t t : toks)
                    if (t >= 0 && t < n_vocab && !seen[size_t(t)]) {
                        seen[size_t(t)] = 1;
                        float& l = logits[size_t(t)];
                        l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
                    }
        }
        if (pres)
            for (int t = 0; t < n_vocab; t++)
                if (counts_[size_t(t)] > 0)
                    logits[size_t(t)] -= params_.frequency_penalty * float(counts_[size_t(t)]) + params_.presence_penalty;
    }

    out.token = backend::sample_row(logits, device_row(generated.size()));
    if (need_raw) out.logprob = raw_copy[size_t(out.token)] - lse;
    return out;
}

}  // namespace osprey::engine
