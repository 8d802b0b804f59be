// SamplingParams: how one request picks its next tokens. Validated at admission (validate()), never on the hot path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace osprey::engine {

struct SamplingParams {
    float temperature = 1.0f;         // 0: greedy
    int top_k = 0;                    // 0: off
    float top_p = 1.0f;               // 1: off
    float min_p = 0.0f;               // 0: off
    float repetition_penalty = 1.0f;  // 1: off (HF/CTRL style: divide positive logits, multiply negative)
    float presence_penalty = 0.0f;    // OpenAI style: subtract once per token that appeared
    float frequency_penalty = 0.0f;   // OpenAI style: subtract per occurrence
    std::optional<uint64_t> seed;     // per-request seed: the same output whatever else runs
    int n_logprobs = -1;              // -1: none; 0: the chosen token's; N: plus the top N
    int max_tokens = 256;
    bool ignore_eos = false;
    std::vector<std::string> stop;    // stop strings (not emitted)

    // Throws Error(InvalidArgument) naming the first bad field.
    void validate() const;
    bool greedy() const { return temperature <= 0.0f; }
    // Greedy with nothing that needs the whole distribution on the host (penalties, logprobs): the token is the
    // first maximum of the raw logits, which the backend can find where the logits are (Backend::argmax_rows).
    bool plain_greedy() const { return greedy() && device_samplable(); }
    // Nothing but temperature, top-k, top-p, min-p and the seed: the backend can draw the token where the logits
    // are (Backend::sample_rows), the same token the host Sampler would draw.
    bool device_samplable() const {
        return n_logprobs < 0 && repetition_penalty == 1.0f && presence_penalty == 0.0f && frequency_penalty == 0.0f;
    }
};

}  // namespace osprey::engine
