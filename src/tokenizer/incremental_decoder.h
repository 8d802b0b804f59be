// IncrementalDecoder: turns a stream of token ids into text, one id at a time, for streaming output.
//
// push() returns only complete UTF-8: bytes of a character split across tokens (byte-level BPE pieces or
// SentencePiece <0xNN> byte tokens) are held back until the character is complete. Bytes that can never form a
// valid character are emitted as U+FFFD, so every chunk is valid UTF-8. The leading space a SentencePiece
// tokenizer adds (add_space_prefix) is dropped from the first text token, as in Tokenizer::decode().
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace osprey::tokenizer {

class IncrementalDecoder {
  public:
    // `tokenizer` must outlive the decoder. `skip_special`: control tokens (BOS/EOS/chat markers) produce no text.
    explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special = false);

    // The text completed by this token (possibly empty).
    std::string push(int32_t id);
    // Whatever is still held back (an incomplete trailing sequence becomes U+FFFD); resets the byte buffer.
    std::string flush();
    // Starts a new stream (the next text token again gets its leading space stripped if the model adds one).
    void reset();
    size_t n_pending_bytes() const { return pending_.size(); }

  private:
    const Tokenizer* tokenizer_;
    bool skip_special_;
    bool at_start_ = true;
    std::string pending_;
};

}  // namespace osprey::tokenizer
