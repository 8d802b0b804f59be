// Tokenizer::from_gguf: reads tokenizer.ggml.* metadata (GGUF's tokenizer keys, as written by llama.cpp's converter).
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

namespace osprey::tokenizer {

namespace {

const char* const kLlama3Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

bool one_of(const std::string& s, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (s == n) return true;
    return false;
}

// The pre-tokenizer regexes of a GGUF `tokenizer.ggml.pre` name (llama.cpp's table for the families we support).
std::vector<std::string> pre_patterns(const std::string& pre, bool& ignore_merges) {
    ignore_merges = false;
    if (one_of(pre, {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})) {
        ignore_merges = pre != "falcon3" && pre != "pixtral";
        return {kLlama3Pattern};
    }
    if (one_of(pre, {"qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan", "megrez"})) return {kQwen2Pattern};
    if (one_of(pre, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}))
        return {R"(\p{N})", kGpt2Pattern};
    if (one_of(pre, {"gpt-2", "gpt2", "default", "phi-2", "jina-es", "jina-de", "gigachat", "roberta-bpe", "mpt",
                     "olmo", "jais", "trillion", "poro-chat", "viking", "bloom", "gpt3-finnish"}))
        return {kGpt2Pattern};
    spdlog::warn("tokenizer: unknown GGUF pre-tokenizer '{}', using the GPT-2 regex (ids may differ)", pre);
    return {kGpt2Pattern};
}

}  // namespace

struct GgufLoader {
    static Tokenizer load(const formats::GgufFile& g) {
        Tokenizer tk;
        const std::string model = g.get_string("tokenizer.ggml.model").value_or("");
        if (model.empty())
            raise(ErrorCode::InvalidFile, "{}: no tokenizer.ggml.model key: the GGUF file has no tokenizer", g.path());
        std::vector<std::string> tokens = g.get_string_array("tokenizer.ggml.tokens");
        if (tokens.empty()) raise(ErrorCode::InvalidFile, "{}: tokenizer.ggml.tokens is missing or empty", g.path());
        const std::vector<float> scores = g.get_float_array("tokenizer.ggml.scores");
        const std::vector<int64_t> types = g.get_int_array("tokenizer.ggml.token_type");
        if (!scores.empty() && scores.size() != tokens.size())
            raise(ErrorCode::InvalidFile, "{}: tokenizer.ggml.scores has {} entries for {} tokens", g.path(),
                  scores.size(), tokens.size());
        if (!types.empty() && types.size() != tokens.size())
            raise(ErrorCode::InvalidFile, "{}: tokenizer.ggml.token_type has {} entries for {} tokens", g.path(),
                  types.size(), tokens.size());

        Vocab& v = tk.vocab_;
        const size_t n = tokens.size();
        v.tokens.reserve(n);
        v.types.reserve(n);
        v.token_to_id.reserve(n * 2);
        for (size_t i = 0; i < n; ++i) {
            TokenType t = TokenType::Normal;
            if (!types.empty()) {
                const int64_t raw = types[i];
                t = raw >= 0 && raw <= 6 ? static_cast<TokenType>(raw) : TokenType::Normal;
            }
            v.tokens.push_back(std::move(tokens[i]));
            v.types.push_back(t);
            v.token_to_id.emplace(v.tokens.back(), static_cast<int32_t>(i));
        }
        v.scores = scores;

        auto id_key = [&](const char* key) -> int32_t {
            const auto val = g.get_int(key);
            if (!val) return -1;
            if (*val < 0 || *val >= static_cast<int64_t>(n)) {
                spdlog::warn("tokenizer: {} = {} is outside the vocabulary; ignored", key, *val);
                return -1;
            }
            return static_cast<int32_t>(*val);
        };
        tk.bos_id_ = id_key("tokenizer.ggml.bos_token_id");
        tk.eos_id_ = id_key("tokenizer.ggml.eos_token_id");
        tk.unk_id_ = id_key("tokenizer.ggml.unknown_token_id");
        tk.chat_template_ = g.get_string("tokenizer.chat_template").value_or("");

        if (model == "llama") {
            tk.kind_ = Tokenizer::ModelKind::Spm;
            tk.byte_level_ = false;
            if (tk.unk_id_ < 0) tk.unk_id_ = v.find("<unk>");
            tk.spm_ = std::make_unique<SpmModel>(v, tk.unk_id_);
            tk.spm_escape_ = true;
            tk.spm_space_prefix_ = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
            tk.strip_leading_space_ = tk.spm_space_prefix_;
            tk.add_bos_ = g.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
            tk.add_eos_ = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
        } else if (model == "gpt2") {
            tk.kind_ = Tokenizer::ModelKind::Bpe;
            tk.byte_level_ = true;
            const std::vector<std::string> merge_strs = g.get_string_array("tokenizer.ggml.merges");
            if (merge_strs.empty())
                raise(ErrorCode::InvalidFile, "{}: a 'gpt2' tokenizer needs tokenizer.ggml.merges", g.path());
            std::vector<std::pair<std::string, std::string>> merges;
            merges.reserve(merge_strs.size());
            for (const auto& m : merge_strs) {
                const size_t sp = m.find(' ', 1);
                if (sp == std::string::npos) raise(ErrorCode::InvalidFile, "{}: malformed merge '{}'", g.path(), m);
                merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
            }
            const std::string pre = g.get_string("tokenizer.ggml.pre").value_or("default");
            BpeOptions opt;
            opt.byte_level = true;
            std::vector<std::string> patterns = pre_patterns(pre, opt.ignore_merges);
            for (const auto& p : patterns) {
                PreTokenizerStep step;
                step.kind = PreTokenizerStep::Kind::Split;
                step.regex = PreTokenizer::regex(p);
                step.behavior = SplitBehavior::Isolated;
                tk.pre_.add_step(std::move(step));
            }
            tk.bpe_ = std::make_unique<BpeModel>(v, merges, opt);
            tk.add_bos_ = g.get_bool("tokenizer.ggml.add_bos_token").value_or(false);
            tk.add_eos_ = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
        } else {
            raise(ErrorCode::Unsupported, "{}: tokenizer model '{}' is not supported (supported: llama, gpt2)",
                  g.path(), model);
        }
        if (tk.add_bos_ && tk.bos_id_ >= 0) tk.prefix_ids_.push_back(tk.bos_id_);
        if (tk.add_eos_ && tk.eos_id_ >= 0) tk.suffix_ids_.push_back(tk.eos_id_);

        // Tokens split out before the model runs: control and unknown tokens (only with parse_special) and
        // user-defined tokens (always).
        for (size_t i = 0; i < n; ++i) {
            const TokenType t = v.types[i];
            if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
            if (v.tokens[i].empty()) continue;
            AddedToken a;
            a.id = static_cast<int32_t>(i);
            a.content = v.tokens[i];
            a.special = t != TokenType::UserDefined;
            tk.added_.push_back(std::move(a));
        }
        tk.finalize();
        for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
            const int32_t id = id_key(key);
            if (id >= 0) tk.eos_ids_.insert(id);
        }
        return tk;
    }
};

Tokenizer Tokenizer::from_gguf(const formats::GgufFile& gguf) { return GgufLoader::load(gguf); }

}  // namespace osprey::tokenizer
