// Tokenizer: text <-> token ids for GGUF vocabularies and Hugging Face tokenizer.json files.
//
// Pipeline of encode(): split out added/special tokens (leftmost-longest; special ones only when parse_special),
// then per remaining fragment: normalise (NFC, replace, prepend), pre-tokenize (regex splits), and run the model
// (merge-rank BPE, byte-level or with byte fallback; or SentencePiece score BPE). BOS/EOS come from the model's
// rules (GGUF add_bos/add_eos, tokenizer.json TemplateProcessing, tokenizer_config add_bos_token).
// Any bytes are accepted: invalid UTF-8 and control bytes are ordinary input.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/vocab.h"

namespace osprey::formats {
class GgufFile;
}

namespace osprey::tokenizer {

struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool special = true;  // matched only when parse_special
    bool lstrip = false;  // swallows whitespace on its left
    bool rstrip = false;  // swallows whitespace on its right
};

struct NormalizerOp {
    enum class Kind { Nfc, Replace, Prepend } kind = Kind::Nfc;
    std::string from, to;  // Replace: from -> to; Prepend: `to`
};

class Tokenizer {
  public:
    // A GGUF file's tokenizer.* metadata (vocab-only files work). Throws Error(InvalidFile/Unsupported).
    static Tokenizer from_gguf(const formats::GgufFile& gguf);
    // tokenizer.json (+ optional tokenizer_config.json, and generation_config.json beside it for extra EOS ids).
    static Tokenizer from_hf_json(const std::string& tokenizer_json_path, const std::string& tokenizer_config_path);
    // A .gguf file, a tokenizer.json, or a folder holding tokenizer.json (+ tokenizer_config.json).
    static Tokenizer from_path(const std::string& path);

    // `add_special`: BOS/EOS per the model's rules. `parse_special`: text spelling a special token becomes it.
    std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
    // Concatenated token bytes (may be invalid UTF-8 when ids split a character). `skip_special` drops control
    // tokens (BOS, EOS, chat markers).
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
    // The bytes token `id` stands for ("▁" as ' ', <0xNN> as the byte, byte-level chars as their bytes).
    const std::string& token_to_piece(int32_t id) const;
    // The token's text as stored in the vocabulary.
    const std::string& token_text(int32_t id) const;
    // The id of a token by its stored text, if any.
    std::optional<int32_t> find_token(std::string_view text) const;

    int32_t n_vocab() const { return vocab_.n_vocab(); }
    int32_t bos_id() const { return bos_id_; }
    int32_t eos_id() const { return eos_id_; }
    const std::set<int32_t>& eos_ids() const { return eos_ids_; }
    void add_eos_id(int32_t id);
    bool is_eos(int32_t id) const { return eos_ids_.count(id) != 0; }
    bool is_special(int32_t id) const;
    TokenType token_type(int32_t id) const;  // control/unknown/unused tokens (BOS, EOS, chat markers)
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    // Whether decode() drops a leading space that encode() added (SentencePiece add_space_prefix).
    bool strips_leading_space() const { return strip_leading_space_; }
    bool is_byte_level() const { return byte_level_; }
    // The Jinja chat template (GGUF tokenizer.chat_template or tokenizer_config.json), empty when none.
    const std::string& chat_template() const { return chat_template_; }
    const std::string& bos_text() const;
    const std::string& eos_text() const;

  private:
    Tokenizer() = default;
    struct Fragment {
        int32_t token = -1;  // >= 0: an added token; else raw text [begin, end)
        size_t begin = 0, end = 0;
    };
    void finalize();  // builds the added-token trie, pieces and EOS set after a loader filled the fields
    void split_added(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
    void encode_fragment(std::string_view text, bool first, bool prev_special, std::vector<int32_t>& out) const;
    int32_t trie_child(int32_t node, uint8_t byte) const;

    Vocab vocab_;
    enum class ModelKind { Bpe, Spm } kind_ = ModelKind::Bpe;
    std::unique_ptr<BpeModel> bpe_;
    std::unique_ptr<SpmModel> spm_;
    bool byte_level_ = true;
    std::vector<NormalizerOp> normalizers_;
    PreTokenizer pre_;
    bool spm_space_prefix_ = false;  // GGUF SPM: prefix ' ' to text at the start / after a special token
    bool spm_escape_ = false;        // GGUF SPM: ' ' -> "▁"
    bool strip_leading_space_ = false;

    std::vector<AddedToken> added_;
    std::vector<int32_t> prefix_ids_, suffix_ids_;  // added around the text when add_special
    bool add_bos_ = false, add_eos_ = false;
    int32_t bos_id_ = -1, eos_id_ = -1, unk_id_ = -1;
    std::set<int32_t> eos_ids_;
    std::string chat_template_;

    std::vector<std::string> pieces_;          // [n_vocab] decoded bytes per token
    std::vector<int32_t> trie_token_;          // per trie node: index into added_ or -1
    std::unordered_map<uint64_t, int32_t> trie_edges_;  // (node << 8 | byte) -> child node
    bool trie_first_byte_[256] = {};

    friend struct GgufLoader;
    friend struct JsonLoader;
};

}  // namespace osprey::tokenizer
