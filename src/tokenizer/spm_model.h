// SpmModel: SentencePiece-style BPE driven by token scores (GGUF tokenizer.ggml.model == "llama").
//
// Adjacent symbols (UTF-8 characters) are merged highest-score pair first while the concatenation is a token;
// symbols left that are not tokens are re-split along their merge history, then fall back to <0xNN> byte
// tokens (or the unknown token). Input is text already escaped (' ' -> "▁").
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace osprey::tokenizer {

class SpmModel {
  public:
    SpmModel(const Vocab& vocab, int32_t unk_id);
    void encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const;

  private:
    // Merges never cross a boundary "x▁" (x not '▁') unless a token spans one: such texts are split into words
    // there and each word is encoded (and cached) on its own; `crossing_` lists the tokens that span one.
    void encode_word(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const;
    void encode_cached(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out) const;
    std::vector<std::string> crossing_;
    bool split_words_ = false;
    mutable std::mutex cache_mu_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
    int32_t lookup(const Vocab& vocab, std::string_view text) const;  // -1 for absent/control/unused tokens
    std::vector<uint64_t> filter_;  // bitset over hash(token text): most failing bigram lookups stop here
    uint64_t filter_mask_ = 0;
    int32_t byte_ids_[256];
    int32_t unk_id_ = -1;
};

}  // namespace osprey::tokenizer
