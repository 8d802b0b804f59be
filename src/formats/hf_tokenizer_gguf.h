// add_hf_tokenizer_to_gguf: converts a Hugging Face byte-level BPE tokenizer (tokenizer.json + tokenizer_config.json)
// into GGUF tokenizer metadata, the keys llama.cpp's converter writes and Tokenizer::from_gguf reads:
// tokenizer.ggml.model = "gpt2", .pre (llama-bpe / qwen2 / smollm / gpt-2, chosen from the pre-tokenizer),
// .tokens (padded with "[PADn]" up to the model's vocab_size), .token_type, .merges, BOS/EOS/EOT/EOM/padding ids,
// add_bos/add_eos (the tokenizer.json post-processor and tokenizer_config.json rules) and tokenizer.chat_template.
// Tokenizers a GGUF "gpt2" vocabulary cannot reproduce (SentencePiece, unknown pre-tokenizers) are Error(Unsupported).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf_writer.h"

namespace osprey::formats {

struct GgufTokenizerSummary {
    std::string pre;      // the tokenizer.ggml.pre name written
    int64_t n_tokens = 0;  // in the tokenizer (before padding)
};

// `dir` holds tokenizer.json (+ tokenizer_config.json). `n_vocab`: the model's vocabulary size (>= the tokenizer's).
// `eos_ids`: the model's end-of-generation ids (generation_config.json); those other than the tokenizer's EOS become
// tokenizer.ggml.eot_token_id / eom_token_id.
GgufTokenizerSummary add_hf_tokenizer_to_gguf(GgufWriter& writer, const std::string& dir, int64_t n_vocab,
                                              const std::vector<int64_t>& eos_ids);

}  // namespace osprey::formats
