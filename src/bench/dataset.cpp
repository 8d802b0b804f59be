#include "bench/dataset.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace osprey::bench {

namespace {

using nlohmann::json;

void check_output_len_dist(const DatasetOptions& o) {
    if (o.output_len_dist != "uniform" && o.output_len_dist != "exponential")
        raise(ErrorCode::InvalidArgument, "--output-len-dist must be uniform or exponential, got '{}'", o.output_len_dist);
}

// An output length of mean ~len drawn from Exp(1), clamped to [1, 8 len].
int exponential_len(int len, std::mt19937_64& rng) {
    const double e = std::exponential_distribution<double>(1.0)(rng);
    return int(std::clamp<long>(std::lround(double(len) * e), 1L, 8L * len));
}

std::vector<SampleRequest> sample_random(const DatasetOptions& o, const tokenizer::Tokenizer* tok) {
    if (o.random_input_len < 1) raise(ErrorCode::InvalidArgument, "--random-input-len must be >= 1");
    if (o.random_output_len < 1) raise(ErrorCode::InvalidArgument, "--random-output-len must be >= 1");
    if (!(o.random_range_ratio >= 0 && o.random_range_ratio < 1))
        raise(ErrorCode::InvalidArgument, "--random-range-ratio must be in [0, 1), got {}", o.random_range_ratio);
    check_output_len_dist(o);
    const bool exponential = o.output_len_dist == "exponential";
    std::mt19937_64 rng(o.seed);
    auto range = [&](int len) {
        const int lo = std::max(1, int(double(len) * (1 - o.random_range_ratio)));
        const int hi = std::max(lo, int(double(len) * (1 + o.random_range_ratio)));
        return std::uniform_int_distribution<int>(lo, hi);
    };
    auto in_dist = range(o.random_input_len), out_dist = range(o.random_output_len);
    std::vector<int32_t> allowed;
    if (tok) {
        for (int32_t id = 0; id < tok->n_vocab(); ++id)
            if (!tok->is_special(id) && !tok->token_to_piece(id).empty()) allowed.push_back(id);
        if (allowed.empty()) raise(ErrorCode::InvalidArgument, "the tokenizer has no ordinary tokens");
    }
    static const char* kWords[] = {"the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for",
                                   "on", "are", "as", "with", "his", "they", "at", "be", "this", "have", "from",
                                   "or", "one", "had", "by", "word", "but", "not", "what", "all", "were", "we"};
    std::vector<SampleRequest> out;
    for (int i = 0; i < o.num_prompts; ++i) {
        SampleRequest r;
        const int in_len = in_dist(rng);
        r.expected_output_len = exponential ? exponential_len(o.random_output_len, rng) : out_dist(rng);
        if (tok) {
            const size_t offset = std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng);
            std::vector<int32_t> ids(static_cast<size_t>(in_len));
            for (int j = 0; j < in_len; ++j) ids[size_t(j)] = allowed[(offset + size_t(i) + size_t(j)) % allowed.size()];
            // Decoded text may re-tokenize differently: re-encode, cut to the length, decode once more.
            std::vector<int32_t> again = tok->encode(tok->decode(ids), false, false);
            if (again.size() > size_t(in_len)) again.resize(size_t(in_len));
            r.prompt = tok->decode(again);
            r.prompt_ids = tok->encode(r.prompt, false, false);
            r.prompt_len = int(r.prompt_ids.size());
        } else {
            std::uniform_int_distribution<size_t> w(0, std::size(kWords) - 1);
            for (int j = 0; j < in_len; ++j) {
                if (j) r.prompt += ' ';
                r.prompt += kWords[w(rng)];
            }
        }
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<SampleRequest> sample_sharegpt(const DatasetOptions& o, const tokenizer::Tokenizer* tok) {
    if (o.path.empty()) raise(ErrorCode::InvalidArgument, "--dataset sharegpt needs --dataset-path");
    if (o.sharegpt_output_len < 0) raise(ErrorCode::InvalidArgument, "--sharegpt-output-len must be >= 0");
    check_output_len_dist(o);
    const bool exponential = o.output_len_dist == "exponential";
    std::ifstream f(o.path, std::ios::binary);
    if (!f) raise(ErrorCode::NotFound, "{}: cannot open the dataset", o.path);
    std::stringstream ss;
    ss << f.rdbuf();
    json data = json::parse(ss.str(), nullptr, false);
    if (data.is_discarded() || !data.is_array())
        raise(ErrorCode::InvalidFile, "{}: not a JSON array of ShareGPT conversations", o.path);
    struct Entry {
        std::string prompt, completion;
        bool has_completion = false;
    };
    std::vector<Entry> entries;
    for (const json& e : data) {
        if (!e.is_object() || !e.contains("conversations") || !e["conversations"].is_array()) continue;
        const json& conv = e["conversations"];
        if (conv.empty() || !conv[0].is_object() || !conv[0].contains("value") || !conv[0]["value"].is_string())
            continue;
        Entry en;
        en.prompt = conv[0]["value"].get<std::string>();
        if (conv.size() >= 2 && conv[1].is_object() && conv[1].contains("value") && conv[1]["value"].is_string()) {
            en.completion = conv[1]["value"].get<std::string>();
            en.has_completion = true;
        }
        entries.push_back(std::move(en));
    }
    std::mt19937_64 rng(o.seed);
    std::shuffle(entries.begin(), entries.end(), rng);
    std::vector<SampleRequest> out;
    // A fixed output length varied per request by --random-range-ratio: uniform in [L (1 - r), L (1 + r)].
    std::uniform_real_distribution<double> spread(1.0 - o.random_range_ratio, 1.0 + o.random_range_ratio);
    for (const Entry& e : entries) {
        if (int(out.size()) >= o.num_prompts) break;
        SampleRequest r;
        r.prompt = e.prompt;
        const bool fixed = o.sharegpt_output_len > 0;
        if (fixed && exponential) {
            r.expected_output_len = exponential_len(o.sharegpt_output_len, rng);
        } else if (fixed) {
            r.expected_output_len = o.random_range_ratio > 0
                                        ? std::max(1, int(std::lround(o.sharegpt_output_len * spread(rng))))
                                        : o.sharegpt_output_len;
        } else if (e.has_completion && tok) {
            r.expected_output_len = int(tok->encode(e.completion, false, false).size());
        } else if (!e.has_completion) {
            continue;  // no gpt turn and no fixed length: nothing to ask for
        } else {
            raise(ErrorCode::InvalidArgument, "--dataset sharegpt without --sharegpt-output-len needs --tokenizer "
                                              "(output lengths come from the tokenized gpt turns)");
        }
        if (tok) {
            r.prompt_ids = tok->encode(r.prompt, false, false);
            r.prompt_len = int(r.prompt_ids.size());
            // vLLM's is_valid_sequence: min 4 tokens (only for lengths taken from the data), max 1024 / 2048.
            if (r.prompt_len < 4 || (!fixed && r.expected_output_len < 4)) continue;
            // A drawn long tail is clamped to the 2,048-token budget rather than dropped (dropping would shorten
            // the distribution).
            if (fixed && exponential && r.prompt_len <= 1024)
                r.expected_output_len = std::min(r.expected_output_len, 2048 - r.prompt_len);
            if (r.prompt_len > 1024 || r.prompt_len + r.expected_output_len > 2048) continue;
        }
        out.push_back(std::move(r));
    }
    if (int(out.size()) < o.num_prompts)
        raise(ErrorCode::InvalidArgument,
              "{}: only {} usable prompts for --num-prompts {} (conversations without a reply need an output length: "
              "--sharegpt-output-len / --output-len)",
              o.path, out.size(), o.num_prompts);
    return out;
}

}  // namespace

std::vector<SampleRequest> sample_requests(const DatasetOptions& options, const tokenizer::Tokenizer* tokenizer) {
    if (options.num_prompts < 1) raise(ErrorCode::InvalidArgument, "--num-prompts must be >= 1");
    if (options.name == "random") return sample_random(options, tokenizer);
    if (options.name == "sharegpt") return sample_sharegpt(options, tokenizer);
    raise(ErrorCode::InvalidArgument, "--dataset: unknown '{}' (random or sharegpt)", options.name);
}

}  // namespace osprey::bench
