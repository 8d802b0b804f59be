#include "engine/text_stream.h"

#include <algorithm>

namespace osprey::engine {

TextStream::TextStream(const tokenizer::Tokenizer& tokenizer, std::vector<std::string> stop_strings, bool skip_special)
    : decoder_(tokenizer, skip_special), stops_(std::move(stop_strings)) {
    stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
    for (const std::string& s : stops_) max_stop_len_ = std::max(max_stop_len_, s.size());
}

TextStream::Delta TextStream::push(int32_t token) {
    Delta d;
    if (stopped_) {
        d.stopped = true;
        return d;
    }
    held_ += decoder_.push(token);
    if (stops_.empty()) {
        d.text.swap(held_);
        return d;
    }
    // Earliest complete stop string in the held text.
    size_t cut = std::string::npos;
    for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
    if (cut != std::string::npos) {
        d.text = held_.substr(0, cut);
        held_.clear();
        d.stopped = stopped_ = true;
        return d;
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const std::string& s : stops_)
        for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; len--)
            if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
                keep = len;
                break;
            }
    // Never split a UTF-8 character: the held tail starts at a character boundary.
    size_t emit = held_.size() - keep;
    while (emit > 0 && emit < held_.size() && (static_cast<unsigned char>(held_[emit]) & 0xC0) == 0x80) emit--;
    d.text = held_.substr(0, emit);
    held_.erase(0, emit);
    return d;
}

std::string TextStream::finish() {
    if (stopped_) return {};
    std::string out = std::move(held_);
    held_.clear();
    out += decoder_.flush();
    return out;
}

}  // namespace osprey::engine
