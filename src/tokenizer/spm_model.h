// SpmModel: SentencePiece-style BPE driven by token scores (GGUF tokenizer.ggml.model == "llama").
//
// Adjacent symbols (UTF-8 characters) are merged highest-score pair first while the concatenation is a token;
// symbols left that are not tokens are re-split along their merge history, then fall back to <0xNN> byte
// tokens (or the unknown token). Input is text already escaped (' ' -> "▁").
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace osprey::tokenizer {

class SpmModel {
  public:
    SpmModel(const Vocab& vocab, int32_t unk_id);
    void encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const;

  private:
    int32_t lookup(const Vocab& vocab, std::string_view text) const;  // -1 for absent/control/unused tokens
    int32_t byte_ids_[256];
    int32_t unk_id_ = -1;
};

}  // namespace osprey::tokenizer
