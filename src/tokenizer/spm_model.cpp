#include "tokenizer/spm_model.h"

#include <queue>
#include <string>

#include <fmt/format.h>

#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

SpmModel::SpmModel(const Vocab& vocab, int32_t unk_id) : unk_id_(unk_id) {
    for (int i = 0; i < 256; ++i) {
        int32_t id = vocab.find(fmt::format("<0x{:02X}>", i));
        if (id < 0) id = vocab.find(std::string(1, static_cast<char>(i)));
        byte_ids_[i] = id;
    }
    size_t bits = 1 << 16;
    while (bits < vocab.tokens.size() * 16) bits <<= 1;
    filter_.assign(bits / 64, 0);
    filter_mask_ = bits - 1;
    for (const auto& t : vocab.tokens) {
        const uint64_t h = std::hash<std::string_view>{}(t) & filter_mask_;
        filter_[h >> 6] |= uint64_t{1} << (h & 63);
    }
    const std::string_view space = "\xE2\x96\x81";
    for (size_t id = 0; id < vocab.tokens.size(); ++id) {
        const std::string& t = vocab.tokens[id];
        if (lookup(vocab, t) != static_cast<int32_t>(id)) continue;
        for (size_t pos = t.find(space, 1); pos != std::string::npos; pos = t.find(space, pos + 1)) {
            if (pos < space.size() || t.compare(pos - space.size(), space.size(), space) != 0) {
                crossing_.push_back(t);
                break;
            }
        }
    }
    split_words_ = crossing_.size() <= 16;
}

void SpmModel::encode_cached(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out) const {
    const bool cacheable = word.size() <= 64;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    encode_word(vocab, word, ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        if (cache_.size() > (1u << 18)) cache_.clear();
        cache_.emplace(std::string(word), std::move(ids));
    }
}

void SpmModel::encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const {
    bool split = split_words_;
    for (const auto& c : crossing_) {
        if (!split) break;
        if (text.find(c) != std::string_view::npos) split = false;
    }
    if (!split) {
        encode_word(vocab, text, out);
        return;
    }
    const std::string_view space = "\xE2\x96\x81";
    size_t start = 0;
    for (size_t pos = text.find(space, 1); pos != std::string_view::npos; pos = text.find(space, pos + 1)) {
        if (pos >= space.size() && text.compare(pos - space.size(), space.size(), space) == 0) continue;
        encode_cached(vocab, text.substr(start, pos - start), out);
        start = pos;
    }
    encode_cached(vocab, text.substr(start), out);
}

int32_t SpmModel::lookup(const Vocab& vocab, std::string_view text) const {
    const uint64_t h = std::hash<std::string_view>{}(text) & filter_mask_;
    if ((filter_[h >> 6] & (uint64_t{1} << (h & 63))) == 0) return -1;
    const int32_t id = vocab.find(text);
    if (id < 0) return -1;
    const TokenType t = vocab.types[static_cast<size_t>(id)];
    if (t == TokenType::Control || t == TokenType::Unused) return -1;
    return id;
}

void SpmModel::encode_word(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const {
    struct Symbol {
        int prev, next;
        size_t begin, n;  // bytes of `text`
    };
    std::vector<Symbol> sym;
    for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(utf8_seq_len(static_cast<uint8_t>(text[i])), text.size() - i);
        sym.push_back(Symbol{static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1, i, n});
        i += n;
    }
    if (sym.empty()) return;
    sym.back().next = -1;

    struct Bigram {
        int left, right;
        float score;
        size_t size;
    };
    auto worse = [](const Bigram& a, const Bigram& b) {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);

    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view piece = text.substr(sym[left].begin, sym[left].n + sym[right].n);
        const int32_t id = lookup(vocab, piece);
        if (id < 0) return;
        const float score = vocab.scores.empty() ? 0.0f : vocab.scores[static_cast<size_t>(id)];
        queue.push(Bigram{left, right, score, piece.size()});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    // A merged symbol is always a token (a merge needs the concatenation in the vocabulary); a single character
    // that is not a token falls back to its bytes.
    auto emit = [&](size_t begin, size_t n) {
        const std::string_view piece = text.substr(begin, n);
        const int32_t id = lookup(vocab, piece);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
        for (char c : piece) {
            const int32_t bid = byte_ids_[static_cast<uint8_t>(c)];
            if (bid >= 0) out.push_back(bid);
            else if (unk_id_ >= 0) out.push_back(unk_id_);
        }
    };
    for (int i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].n > 0) emit(sym[i].begin, sym[i].n);
    }
}

}  // namespace osprey::tokenizer
