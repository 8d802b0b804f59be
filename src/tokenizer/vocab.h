// Vocab: the token table shared by the tokenizer models (text, score and type per id, text -> id lookup).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace osprey::tokenizer {

// The GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : uint8_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

struct Vocab {
    std::vector<std::string> tokens;  // [n_vocab] token text as stored (byte-level mapped, or with "▁")
    std::vector<float> scores;        // [n_vocab] SentencePiece scores (empty for merge-based BPE)
    std::vector<TokenType> types;     // [n_vocab]
    std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens.size()); }
    // -1 when absent.
    int32_t find(std::string_view text) const {
        auto it = token_to_id.find(text);
        return it == token_to_id.end() ? -1 : it->second;
    }
    // Sets token `id` (growing the table), keeping the first id for a duplicate text.
    void set(int32_t id, std::string text, TokenType type) {
        if (id >= n_vocab()) {
            tokens.resize(static_cast<size_t>(id) + 1);
            types.resize(static_cast<size_t>(id) + 1, TokenType::Unused);
        }
        token_to_id.emplace(text, id);
        tokens[static_cast<size_t>(id)] = std::move(text);
        types[static_cast<size_t>(id)] = type;
    }
};

}  // namespace osprey::tokenizer
