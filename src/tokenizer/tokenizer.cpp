#include "tokenizer/tokenizer.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/unicode_text.h"

namespace osprey::tokenizer {

namespace {

const char* const kSpmSpace = "\xE2\x96\x81";  // "▁"

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    if (from.empty()) return std::string(s);
    std::string out;
    out.reserve(s.size() + s.size() / 4);
    size_t pos = 0;
    while (true) {
        const size_t hit = s.find(from, pos);
        if (hit == std::string_view::npos) break;
        out.append(s.substr(pos, hit - pos));
        out.append(to);
        pos = hit + from.size();
    }
    out.append(s.substr(pos));
    return out;
}

// "<0xNN>" -> NN, else -1.
int parse_byte_token(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

Tokenizer Tokenizer::from_path(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        const fs::path dir(path);
        if (!fs::exists(dir / "tokenizer.json"))
            raise(ErrorCode::NotFound, "no tokenizer.json in folder '{}' (expected a Hugging Face tokenizer)", path);
        const fs::path config = dir / "tokenizer_config.json";
        return from_hf_json((dir / "tokenizer.json").string(), fs::exists(config) ? config.string() : "");
    }
    if (!fs::exists(path, ec)) raise(ErrorCode::NotFound, "tokenizer source '{}' does not exist", path);
    if (path.size() >= 5 && path.substr(path.size() - 5) == ".json") {
        const fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
        return from_hf_json(path, fs::exists(config) ? config.string() : "");
    }
    formats::GgufFile gguf(path);
    return from_gguf(gguf);
}

void Tokenizer::add_eos_id(int32_t id) {
    if (id >= 0 && id < n_vocab()) eos_ids_.insert(id);
}

bool Tokenizer::is_special(int32_t id) const {
    if (id < 0 || id >= n_vocab()) return false;
    const TokenType t = vocab_.types[static_cast<size_t>(id)];
    return t == TokenType::Control || t == TokenType::Unknown || t == TokenType::Unused;
}

TokenType Tokenizer::token_type(int32_t id) const {
    if (id < 0 || id >= n_vocab()) raise(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary (0..{})", id, n_vocab() - 1);
    return vocab_.types[static_cast<size_t>(id)];
}

const std::string& Tokenizer::token_text(int32_t id) const {
    if (id < 0 || id >= n_vocab()) raise(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary (0..{})", id, n_vocab() - 1);
    return vocab_.tokens[static_cast<size_t>(id)];
}

const std::string& Tokenizer::token_to_piece(int32_t id) const {
    if (id < 0 || id >= n_vocab()) raise(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary (0..{})", id, n_vocab() - 1);
    return pieces_[static_cast<size_t>(id)];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
    const int32_t id = vocab_.find(text);
    if (id < 0) return std::nullopt;
    return id;
}

const std::string& Tokenizer::bos_text() const {
    static const std::string empty;
    return bos_id_ >= 0 && bos_id_ < n_vocab() ? vocab_.tokens[static_cast<size_t>(bos_id_)] : empty;
}

const std::string& Tokenizer::eos_text() const {
    static const std::string empty;
    return eos_id_ >= 0 && eos_id_ < n_vocab() ? vocab_.tokens[static_cast<size_t>(eos_id_)] : empty;
}

void Tokenizer::finalize() {
    const size_t n = vocab_.tokens.size();
    if (vocab_.types.size() < n) vocab_.types.resize(n, TokenType::Normal);
    // Decoded bytes of every token.
    pieces_.assign(n, std::string());
    for (size_t id = 0; id < n; ++id) {
        const std::string& t = vocab_.tokens[id];
        const TokenType type = vocab_.types[id];
        std::string& p = pieces_[id];
        if (!byte_level_ && (type == TokenType::Byte || type == TokenType::Normal || type == TokenType::Undefined)) {
            const int b = parse_byte_token(t);
            if (b >= 0 && (type == TokenType::Byte || kind_ == ModelKind::Spm || (bpe_ && bpe_->options().byte_fallback))) {
                p.push_back(static_cast<char>(b));
                continue;
            }
        }
        if (byte_level_) {
            for (size_t i = 0; i < t.size();) {
                size_t len = utf8_valid_len(t, i);
                if (len == 0) {
                    p.push_back(t[i]);
                    ++i;
                    continue;
                }
                const int b = unicode_to_byte(decode_utf8(t, i, len));
                if (b >= 0) p.push_back(static_cast<char>(b));
                else p.append(t, i, len);
                i += len;
            }
        } else {
            p = replace_all(t, kSpmSpace, " ");
        }
    }
    // Trie of added tokens for leftmost-longest matching.
    trie_token_.assign(1, -1);
    trie_edges_.clear();
    std::fill(std::begin(trie_first_byte_), std::end(trie_first_byte_), false);
    for (size_t k = 0; k < added_.size(); ++k) {
        const std::string& c = added_[k].content;
        if (c.empty() || added_[k].id < 0 || added_[k].id >= n_vocab()) continue;
        trie_first_byte_[static_cast<uint8_t>(c[0])] = true;
        int32_t node = 0;
        for (char ch : c) {
            const uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(ch);
            auto it = trie_edges_.find(key);
            if (it == trie_edges_.end()) {
                const auto child = static_cast<int32_t>(trie_token_.size());
                trie_token_.push_back(-1);
                trie_edges_.emplace(key, child);
                node = child;
            } else {
                node = it->second;
            }
        }
        if (trie_token_[static_cast<size_t>(node)] < 0) trie_token_[static_cast<size_t>(node)] = static_cast<int32_t>(k);
    }
    // End-of-generation tokens: the EOS id plus the usual end-of-turn markers.
    add_eos_id(eos_id_);
    for (const char* t : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                          "<|end_of_text|>", "<EOT>", "<|EOT|>", "<|return|>", "<|call|>"}) {
        const int32_t id = vocab_.find(t);
        if (id >= 0 && is_special(id)) eos_ids_.insert(id);
    }
}

int32_t Tokenizer::trie_child(int32_t node, uint8_t byte) const {
    auto it = trie_edges_.find((static_cast<uint64_t>(node) << 8) | byte);
    return it == trie_edges_.end() ? -1 : it->second;
}

void Tokenizer::split_added(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
    size_t last = 0;  // start of the pending raw text
    size_t pos = 0;
    while (pos < text.size()) {
        if (!trie_first_byte_[static_cast<uint8_t>(text[pos])]) {
            ++pos;
            continue;
        }
        int32_t best = -1;
        size_t best_end = 0;
        int32_t node = 0;
        for (size_t i = pos; i < text.size(); ++i) {
            node = trie_child(node, static_cast<uint8_t>(text[i]));
            if (node < 0) break;
            const int32_t k = trie_token_[static_cast<size_t>(node)];
            if (k >= 0 && (parse_special || !added_[static_cast<size_t>(k)].special)) {
                best = k;
                best_end = i + 1;
            }
        }
        if (best < 0) {
            ++pos;
            continue;
        }
        const AddedToken& tok = added_[static_cast<size_t>(best)];
        size_t b = pos, e = best_end;
        if (tok.lstrip)
            while (b > last && is_ascii_space(text[b - 1])) --b;
        if (tok.rstrip)
            while (e < text.size() && is_ascii_space(text[e])) ++e;
        if (b > last) out.push_back(Fragment{-1, last, b});
        out.push_back(Fragment{tok.id, b, e});
        pos = last = e;
    }
    if (last < text.size()) out.push_back(Fragment{-1, last, text.size()});
}

void Tokenizer::encode_fragment(std::string_view text, bool first, bool prev_special,
                                std::vector<int32_t>& out) const {
    if (spm_escape_) {
        std::string s;
        if (spm_space_prefix_ && prev_special) s.push_back(' ');
        s.append(text);
        spm_->encode(vocab_, replace_all(s, " ", kSpmSpace), out);
        return;
    }
    std::string s(text);
    for (const auto& op : normalizers_) {
        switch (op.kind) {
            case NormalizerOp::Kind::Nfc: s = nfc_normalize(s); break;
            case NormalizerOp::Kind::Replace: s = replace_all(s, op.from, op.to); break;
            case NormalizerOp::Kind::Prepend:
                if (!s.empty()) s.insert(0, op.to);
                break;
        }
    }
    std::vector<std::string> words;
    if (pre_.empty()) {
        words.push_back(std::move(s));
    } else {
        pre_.split(s, first, words);
    }
    for (const auto& w : words) {
        if (kind_ == ModelKind::Bpe) bpe_->encode_word(vocab_, w, out);
        else spm_->encode(vocab_, w, out);
    }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<int32_t> out;
    if (add_special) out = prefix_ids_;
    std::vector<Fragment> frags;
    split_added(text, parse_special, frags);
    bool prev_special = true;
    bool first = true;
    for (const auto& f : frags) {
        if (f.token >= 0) {
            out.push_back(f.token);
            prev_special = true;
        } else {
            encode_fragment(text.substr(f.begin, f.end - f.begin), first, prev_special, out);
            prev_special = false;
        }
        first = false;
    }
    if (add_special) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
    return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string out;
    bool at_start = true;
    for (int32_t id : ids) {
        if (id < 0 || id >= n_vocab()) raise(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary (0..{})", id, n_vocab() - 1);
        const TokenType t = vocab_.types[static_cast<size_t>(id)];
        if (t == TokenType::Control) {
            if (!skip_special) out += pieces_[static_cast<size_t>(id)];
            continue;
        }
        const std::string& p = pieces_[static_cast<size_t>(id)];
        if (at_start && strip_leading_space_ && !p.empty() && p[0] == ' ') out.append(p, 1);
        else out += p;
        at_start = false;
    }
    return out;
}

}  // namespace osprey::tokenizer
