#include "tokenizer/bpe_model.h"

#include <queue>

#include <fmt/format.h>

#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

constexpr size_t kMaxCachedWord = 128;
constexpr size_t kMaxCacheEntries = 1 << 18;

}  // namespace

BpeModel::BpeModel(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options)
    : options_(options) {
    ranks_.reserve(merges.size() * 2);
    int32_t rank = 0;
    for (const auto& [a, b] : merges) {
        const int32_t ia = vocab.find(a), ib = vocab.find(b);
        const int32_t im = vocab.find(a + b);
        if (ia >= 0 && ib >= 0 && im >= 0) ranks_.emplace(pair_key(ia, ib), Merge{rank, im});
        ++rank;
    }
    for (int i = 0; i < 256; ++i) {
        if (options_.byte_level) {
            byte_ids_[i] = vocab.find(byte_to_unicode(static_cast<uint8_t>(i)));
        } else {
            byte_ids_[i] = vocab.find(fmt::format("<0x{:02X}>", i));
        }
    }
}

BpeModel::BpeModel(const BpeModel& other) : options_(other.options_), ranks_(other.ranks_) {
    std::copy(std::begin(other.byte_ids_), std::end(other.byte_ids_), std::begin(byte_ids_));
}

void BpeModel::initial_symbols(const Vocab& vocab, std::string_view word, std::vector<int32_t>& ids) const {
    if (options_.byte_level) {
        for (char c : word) {
            const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
            if (id >= 0) ids.push_back(id);
            else if (options_.unk_id >= 0) ids.push_back(options_.unk_id);
        }
        return;
    }
    bool last_unk = false;
    for (size_t i = 0; i < word.size();) {
        size_t n = utf8_valid_len(word, i);
        if (n == 0) n = 1;  // an invalid byte is a character of its own
        const int32_t id = vocab.find(word.substr(i, n));
        if (id >= 0) {
            ids.push_back(id);
            last_unk = false;
        } else if (options_.byte_fallback && byte_ids_[static_cast<uint8_t>(word[i])] >= 0) {
            for (size_t k = 0; k < n; ++k) {
                const int32_t bid = byte_ids_[static_cast<uint8_t>(word[i + k])];
                ids.push_back(bid >= 0 ? bid : options_.unk_id);
            }
            last_unk = false;
        } else if (options_.unk_id >= 0) {
            if (!(options_.fuse_unk && last_unk)) ids.push_back(options_.unk_id);
            last_unk = true;
        }
        i += n;
    }
}

void BpeModel::merge(std::vector<int32_t>& ids) const {
    const int n = static_cast<int>(ids.size());
    if (n < 2) return;
    std::vector<int> prev(n), next(n);
    for (int i = 0; i < n; ++i) {
        prev[i] = i - 1;
        next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Cand {
        int32_t rank;
        int pos;
        int32_t left, right;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
    auto push = [&](int l) {
        if (l < 0) return;
        const int r = next[l];
        if (r < 0) return;
        auto it = ranks_.find(pair_key(ids[l], ids[r]));
        if (it != ranks_.end()) queue.push(Cand{it->second.rank, l, ids[l], ids[r]});
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    std::vector<bool> alive(n, true);
    while (!queue.empty()) {
        const Cand c = queue.top();
        queue.pop();
        const int l = c.pos;
        if (!alive[l] || ids[l] != c.left) continue;
        const int r = next[l];
        if (r < 0 || ids[r] != c.right) continue;
        ids[l] = ranks_.at(pair_key(c.left, c.right)).id;
        alive[r] = false;
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        push(prev[l]);
        push(l);
    }
    std::vector<int32_t> merged;
    for (int i = 0; i >= 0; i = next[i]) merged.push_back(ids[i]);
    ids.swap(merged);
}

void BpeModel::encode_word(const Vocab& vocab, std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    const bool cacheable = word.size() <= kMaxCachedWord;
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    if (options_.ignore_merges) {
        int32_t whole = -1;
        if (options_.byte_level) {
            std::string mapped;
            for (char c : word) mapped += byte_to_unicode(static_cast<uint8_t>(c));
            whole = vocab.find(mapped);
        } else {
            whole = vocab.find(word);
        }
        if (whole >= 0) ids.push_back(whole);
    }
    if (ids.empty()) {
        initial_symbols(vocab, word, ids);
        merge(ids);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        if (cache_.size() >= kMaxCacheEntries) cache_.clear();
        cache_.emplace(std::string(word), std::move(ids));
    }
}

}  // namespace osprey::tokenizer
