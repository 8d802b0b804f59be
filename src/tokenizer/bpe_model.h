// BpeModel: merge-rank BPE (GPT-2 byte-level, or character-level with byte fallback as in tokenizer.json).
//
// A word's symbols are merged lowest-rank pair first with a priority queue over a linked list of symbols
// (O(n log n) per word); results for short words are cached.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace osprey::tokenizer {

struct BpeOptions {
    bool byte_level = true;      // map bytes through the GPT-2 byte<->unicode table first
    bool byte_fallback = false;  // unknown characters become <0xNN> tokens
    bool ignore_merges = false;  // a word that is itself a token is emitted whole
    bool fuse_unk = false;       // consecutive unknowns become one unk
    int32_t unk_id = -1;
};

class BpeModel {
  public:
    // `merges`: (left, right) token texts in rank order; pairs naming unknown tokens are skipped.
    BpeModel(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);
    BpeModel(const BpeModel& other);

    // Appends the ids of one pre-tokenized word (raw bytes; byte-level mapping is applied here).
    void encode_word(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out) const;
    const BpeOptions& options() const { return options_; }
    size_t n_merges() const { return ranks_.size(); }

  private:
    struct Merge {
        int32_t rank;
        int32_t id;
    };
    void initial_symbols(const Vocab& vocab, std::string_view word, std::vector<int32_t>& ids) const;
    void merge(std::vector<int32_t>& ids) const;

    BpeOptions options_;
    std::unordered_map<uint64_t, Merge> ranks_;  // (left id << 32 | right id) -> rank and merged id
    int32_t byte_ids_[256];                      // byte-level: id of each mapped byte; byte fallback: <0xNN>

    mutable std::mutex cache_mu_;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace osprey::tokenizer
