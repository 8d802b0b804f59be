#include "tokenizer/spm_model.h"

#include <queue>
#include <string>
#include <unordered_map>

#include <fmt/format.h>

#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

SpmModel::SpmModel(const Vocab& vocab, int32_t unk_id) : unk_id_(unk_id) {
    for (int i = 0; i < 256; ++i) {
        int32_t id = vocab.find(fmt::format("<0x{:02X}>", i));
        if (id < 0) id = vocab.find(std::string(1, static_cast<char>(i)));
        byte_ids_[i] = id;
    }
}

int32_t SpmModel::lookup(const Vocab& vocab, std::string_view text) const {
    const int32_t id = vocab.find(text);
    if (id < 0) return -1;
    const TokenType t = vocab.types[static_cast<size_t>(id)];
    if (t == TokenType::Control || t == TokenType::Unused) return -1;
    return id;
}

void SpmModel::encode(const Vocab& vocab, std::string_view text, std::vector<int32_t>& out) const {
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
    std::unordered_map<std::string_view, std::pair<int, int>> rev_merge;

    auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view piece = text.substr(sym[left].begin, sym[left].n + sym[right].n);
        const int32_t id = lookup(vocab, piece);
        if (id < 0) return;
        const float score = vocab.scores.empty() ? 0.0f : vocab.scores[static_cast<size_t>(id)];
        queue.push(Bigram{left, right, score, piece.size()});
        rev_merge[piece] = {left, right};
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

    // Emits a symbol's token, or re-splits it along its merge history, or falls back to bytes.
    auto resegment = [&](auto&& self, size_t begin, size_t n) -> void {
        const std::string_view piece = text.substr(begin, n);
        const int32_t id = lookup(vocab, piece);
        if (id >= 0) {
            out.push_back(id);
            return;
        }
        auto it = rev_merge.find(piece);
        if (it == rev_merge.end()) {
            for (char c : piece) {
                const int32_t bid = byte_ids_[static_cast<uint8_t>(c)];
                if (bid >= 0) out.push_back(bid);
                else if (unk_id_ >= 0) out.push_back(unk_id_);
            }
            return;
        }
        const Symbol& a = sym[it->second.first];
        const Symbol& c = sym[it->second.second];
        const size_t split = c.begin - a.begin;
        self(self, begin, split);
        self(self, begin + split, n - split);
    };
    for (int i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].n > 0) resegment(resegment, sym[i].begin, sym[i].n);
    }
}

}  // namespace osprey::tokenizer
