// Benchmark prompts, sampled the way vLLM's `bench serve` samples them.
//
// random: per request an input length uniform in [I(1-r), I(1+r)] and an output length uniform in [O(1-r), O(1+r)]
//   (r = --random-range-ratio), or with --output-len-dist exponential an output length O * E, E ~ Exp(1), clamped to
//   [1, 8 O] (mean ~O, long tail: the shape of chat reply lengths, for prompt sets without replies); the prompt is a run of consecutive non-special token ids from a random offset,
//   decoded to text, re-encoded and cut to the input length (so the server sees exactly that many tokens). Without a
//   tokenizer the prompt is random words and the token count comes from the server's `usage`.
// sharegpt: [{id, conversations:[{from:"human", value}, {from:"gpt", value}?, ...]}]; shuffled with the seed; the
//   prompt is the first human turn; the output length is --sharegpt-output-len when set (varied as above by
//   --random-range-ratio or --output-len-dist exponential), else the tokenized gpt turn. With a tokenizer, vLLM's filters apply (prompt >= 4 and output >= 4 tokens when taken from the data,
//   prompt <= 1024, prompt + output <= 2048).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace osprey::tokenizer {
class Tokenizer;
}

namespace osprey::bench {

struct SampleRequest {
    std::string prompt;
    std::vector<int32_t> prompt_ids;  // the prompt's tokens when a tokenizer made them, else empty
    int prompt_len = -1;              // tokens; -1: unknown until the server's usage says
    int expected_output_len = 0;      // max_tokens sent with the request
};

struct DatasetOptions {
    std::string name = "random";      // random | sharegpt
    std::string path;                 // sharegpt JSON file
    int num_prompts = 1000;
    uint64_t seed = 0;
    int random_input_len = 1024;
    int random_output_len = 128;
    double random_range_ratio = 0.0;  // in [0, 1)
    int sharegpt_output_len = 0;      // 0: from the gpt turn (then a tokenizer or --sharegpt-output-len is needed);
                                      // with random_range_ratio > 0, varied per request as the random dataset's
    std::string output_len_dist = "uniform";  // uniform (by random_range_ratio) | exponential
};

// Throws Error(InvalidArgument/NotFound/InvalidFile) for bad options or a bad file; Error(InvalidArgument) when
// fewer than num_prompts usable prompts exist.
std::vector<SampleRequest> sample_requests(const DatasetOptions& options, const tokenizer::Tokenizer* tokenizer);

}  // namespace osprey::bench
