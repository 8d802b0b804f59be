#include "tokenizer/incremental_decoder.h"

#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
    const std::string& piece = tokenizer_->token_to_piece(id);  // throws on an out-of-range id
    if (tokenizer_->token_type(id) == TokenType::Control) {
        if (skip_special_) return {};
        pending_ += piece;
    } else if (at_start_ && tokenizer_->strips_leading_space() && !piece.empty() && piece[0] == ' ') {
        pending_.append(piece, 1);
        at_start_ = false;
    } else {
        pending_ += piece;
        at_start_ = false;
    }
    const size_t n = utf8_complete_prefix(pending_);
    if (n == 0) return {};
    std::string out = sanitize_utf8(std::string_view(pending_).substr(0, n));
    pending_.erase(0, n);
    return out;
}

std::string IncrementalDecoder::flush() {
    std::string out = sanitize_utf8(pending_);
    pending_.clear();
    return out;
}

void IncrementalDecoder::reset() {
    pending_.clear();
    at_start_ = true;
}

}  // namespace osprey::tokenizer
