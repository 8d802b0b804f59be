#include "formats/hf_config.h"

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/json_util.h"

namespace osprey::formats {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int64_t kMaxHidden = 1 << 20;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxFfn = 1 << 22;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxTokenId = int64_t(1) << 31;

// Field lookup for one config: the text part first (gemma3's text_config), then the top level.
class Fields {
  public:
    Fields(const json& top, const json* text, std::string name) : top_(top), text_(text), name_(std::move(name)) {}

    const json& where(const char* key) const {
        if (text_ && text_->contains(key) && !(*text_)[key].is_null()) return *text_;
        return top_;
    }
    std::string prefix(const char* key) const { return &where(key) == text_ ? "text_config." : ""; }

    std::optional<int64_t> int_(const char* key) const { return json_int(where(key), key, name_, prefix(key)); }
    std::optional<double> num(const char* key) const { return json_number(where(key), key, name_, prefix(key)); }
    std::optional<bool> bool_(const char* key) const { return json_bool(where(key), key, name_, prefix(key)); }
    std::optional<std::string> str(const char* key) const { return json_string(where(key), key, name_, prefix(key)); }
    std::vector<int64_t> ints(const char* key) const { return json_int_or_list(where(key), key, name_, prefix(key)); }

    const std::string& name() const { return name_; }

  private:
    const json& top_;
    const json* text_;
    std::string name_;
};

void check_range(const std::string& name, const char* key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) raise(ErrorCode::InvalidFile, "{}: '{}' = {} is out of range [{}, {}]", name, key, v, lo, hi);
}

void check_positive(const std::string& name, const char* key, double v) {
    if (!(v > 0) || !std::isfinite(v)) raise(ErrorCode::InvalidFile, "{}: '{}' = {} must be a positive number", name, key, v);
}

int64_t required_int(const Fields& f, const char* key, std::optional<int64_t> fallback) {
    if (auto v = f.int_(key)) return *v;
    if (fallback) return *fallback;
    raise(ErrorCode::InvalidFile, "{}: missing '{}'", f.name(), key);
}

RopeScaling parse_rope_scaling(const Fields& f) {
    RopeScaling rs;
    const json& obj = f.where("rope_scaling");
    auto it = obj.find("rope_scaling");
    if (it == obj.end() || it->is_null()) return rs;
    const std::string& name = f.name();
    const std::string p = f.prefix("rope_scaling") + "rope_scaling.";
    if (!it->is_object())
        raise(ErrorCode::InvalidFile, "{}: '{}rope_scaling' must be an object or null, got {}", name,
              f.prefix("rope_scaling"), json_kind(*it));
    std::optional<std::string> type = json_string(*it, "rope_type", name, p);
    if (!type) type = json_string(*it, "type", name, p);
    if (!type) raise(ErrorCode::InvalidFile, "{}: '{}rope_type' is missing", name, p);
    auto need = [&](const char* key) {
        auto v = json_number(*it, key, name, p);
        if (!v) raise(ErrorCode::InvalidFile, "{}: '{}{}' is missing (needed by rope type {})", name, p, key, *type);
        check_positive(name, key, *v);
        return *v;
    };
    if (*type == "default") return rs;
    if (*type == "linear") {
        rs.type = RopeScalingType::Linear;
        rs.factor = need("factor");
    } else if (*type == "llama3") {
        rs.type = RopeScalingType::Llama3;
        rs.factor = need("factor");
        rs.low_freq_factor = need("low_freq_factor");
        rs.high_freq_factor = need("high_freq_factor");
        auto orig = json_int(*it, "original_max_position_embeddings", name, p);
        if (!orig) raise(ErrorCode::InvalidFile, "{}: '{}original_max_position_embeddings' is missing", name, p);
        check_range(name, "rope_scaling.original_max_position_embeddings", *orig, 1, int64_t(1) << 32);
        rs.original_max_position_embeddings = *orig;
        if (rs.high_freq_factor <= rs.low_freq_factor)
            raise(ErrorCode::InvalidFile, "{}: rope_scaling high_freq_factor {} must exceed low_freq_factor {}", name,
                  rs.high_freq_factor, rs.low_freq_factor);
    } else {
        raise(ErrorCode::Unsupported, "{}: rope_scaling type '{}' is not supported (linear and llama3 are)", name, *type);
    }
    return rs;
}

}  // namespace

HfConfig HfConfig::parse(std::string_view text, const std::string& name) {
    const json top = parse_json_text(text, name);
    if (!top.is_object()) raise(ErrorCode::InvalidFile, "{}: must be a JSON object, got {}", name, json_kind(top));

    HfConfig c;
    const auto file_type = json_string(top, "model_type", name);
    if (!file_type) raise(ErrorCode::InvalidFile, "{}: missing 'model_type'", name);
    c.file_model_type = *file_type;

    const json* text_cfg = nullptr;
    if (c.file_model_type == "gemma3") {
        auto it = top.find("text_config");
        if (it != top.end() && !it->is_null()) {
            if (!it->is_object())
                raise(ErrorCode::InvalidFile, "{}: 'text_config' must be an object, got {}", name, json_kind(*it));
            text_cfg = &*it;
        }
        c.model_type = "gemma3_text";
    } else {
        c.model_type = c.file_model_type;
    }
    const std::string& mt = c.model_type;
    if (mt != "llama" && mt != "mistral" && mt != "qwen2" && mt != "qwen3" && mt != "gemma3_text")
        raise(ErrorCode::Unsupported, "{}: model_type '{}' is not supported (llama, mistral, qwen2, qwen3, gemma3, "
              "gemma3_text are)", name, c.file_model_type);
    const bool gemma = mt == "gemma3_text";
    const Fields f(top, text_cfg, name);

    if (auto it = top.find("architectures"); it != top.end() && !it->is_null()) {
        if (!it->is_array()) raise(ErrorCode::InvalidFile, "{}: 'architectures' must be a list of strings", name);
        for (const json& a : *it) {
            if (!a.is_string()) raise(ErrorCode::InvalidFile, "{}: 'architectures' must be a list of strings", name);
            c.architectures.push_back(a.get<std::string>());
        }
    }

    // Gemma3TextConfig's defaults stand in for what a gemma3 config omits; other types must state their sizes.
    auto gd = [&](int64_t v) { return gemma ? std::optional<int64_t>(v) : std::nullopt; };
    c.hidden_size = required_int(f, "hidden_size", gd(2304));
    c.intermediate_size = required_int(f, "intermediate_size", gd(9216));
    c.num_hidden_layers = required_int(f, "num_hidden_layers", gd(26));
    c.num_attention_heads = required_int(f, "num_attention_heads", gd(8));
    c.vocab_size = required_int(f, "vocab_size", gd(262208));
    check_range(name, "hidden_size", c.hidden_size, 1, kMaxHidden);
    check_range(name, "intermediate_size", c.intermediate_size, 1, kMaxFfn);
    check_range(name, "num_hidden_layers", c.num_hidden_layers, 1, kMaxLayers);
    check_range(name, "num_attention_heads", c.num_attention_heads, 1, kMaxHeads);
    check_range(name, "vocab_size", c.vocab_size, 1, kMaxVocab);

    c.num_key_value_heads = f.int_("num_key_value_heads").value_or(gemma ? 4 : c.num_attention_heads);
    check_range(name, "num_key_value_heads", c.num_key_value_heads, 1, c.num_attention_heads);
    if (c.num_attention_heads % c.num_key_value_heads != 0)
        raise(ErrorCode::InvalidFile, "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", name,
              c.num_attention_heads, c.num_key_value_heads);
    if (auto hd = f.int_("head_dim")) {
        c.head_dim = *hd;
    } else if (gemma) {
        c.head_dim = 256;
    } else {
        if (c.hidden_size % c.num_attention_heads != 0)
            raise(ErrorCode::InvalidFile, "{}: hidden_size {} is not a multiple of num_attention_heads {} and no "
                  "'head_dim' is given", name, c.hidden_size, c.num_attention_heads);
        c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    check_range(name, "head_dim", c.head_dim, 1, kMaxHeadDim);

    c.max_position_embeddings = f.int_("max_position_embeddings").value_or(gemma ? 131072 : 2048);
    check_range(name, "max_position_embeddings", c.max_position_embeddings, 1, int64_t(1) << 32);

    c.rms_norm_eps = f.num("rms_norm_eps").value_or(1e-6);
    check_positive(name, "rms_norm_eps", c.rms_norm_eps);
    if (c.rms_norm_eps >= 1) raise(ErrorCode::InvalidFile, "{}: 'rms_norm_eps' = {} is not small", name, c.rms_norm_eps);
    c.rope_theta = f.num("rope_theta").value_or(gemma ? 1000000.0 : 10000.0);
    check_positive(name, "rope_theta", c.rope_theta);
    if (gemma) {
        c.rope_local_base_freq = f.num("rope_local_base_freq").value_or(10000.0);
        check_positive(name, "rope_local_base_freq", *c.rope_local_base_freq);
    }
    c.rope_scaling = parse_rope_scaling(f);

    c.tie_word_embeddings = f.bool_("tie_word_embeddings").value_or(gemma);
    c.attention_bias = f.bool_("attention_bias").value_or(mt == "qwen2");
    c.qk_norm = mt == "qwen3" || gemma;

    c.sliding_window = f.int_("sliding_window");
    if (gemma && !c.sliding_window) c.sliding_window = 4096;
    if (c.sliding_window) check_range(name, "sliding_window", *c.sliding_window, 1, int64_t(1) << 32);
    c.use_sliding_window = f.bool_("use_sliding_window").value_or(false);

    const int64_t n_layers = c.num_hidden_layers;
    const json& lt_obj = f.where("layer_types");
    if (auto it = lt_obj.find("layer_types"); it != lt_obj.end() && !it->is_null()) {
        const std::string key = f.prefix("layer_types") + "layer_types";
        if (!it->is_array()) raise(ErrorCode::InvalidFile, "{}: '{}' must be a list, got {}", name, key, json_kind(*it));
        if (int64_t(it->size()) != n_layers)
            raise(ErrorCode::InvalidFile, "{}: '{}' has {} entries but num_hidden_layers is {}", name, key, it->size(),
                  n_layers);
        for (const json& e : *it) {
            const std::string s = e.is_string() ? e.get<std::string>() : json_kind(e);
            if (s == "sliding_attention") c.layer_types.push_back(AttentionKind::Sliding);
            else if (s == "full_attention") c.layer_types.push_back(AttentionKind::Full);
            else raise(ErrorCode::InvalidFile, "{}: '{}' entry '{}' is neither sliding_attention nor full_attention",
                       name, key, s);
        }
        if (!c.sliding_window)
            for (AttentionKind k : c.layer_types)
                if (k == AttentionKind::Sliding)
                    raise(ErrorCode::InvalidFile, "{}: layer_types has sliding layers but no 'sliding_window'", name);
    } else if (gemma) {
        auto pattern = f.int_("sliding_window_pattern");
        if (!pattern) pattern = f.int_("_sliding_window_pattern");
        const int64_t p = pattern.value_or(6);
        check_range(name, "sliding_window_pattern", p, 1, kMaxLayers);
        for (int64_t i = 0; i < n_layers; i++)
            c.layer_types.push_back((i + 1) % p == 0 ? AttentionKind::Full : AttentionKind::Sliding);
    } else if (mt == "mistral" && c.sliding_window) {
        c.layer_types.assign(size_t(n_layers), AttentionKind::Sliding);
    } else if ((mt == "qwen2" || mt == "qwen3") && c.use_sliding_window && c.sliding_window) {
        // As transformers: layers from max_window_layers on use the window.
        const int64_t mwl = f.int_("max_window_layers").value_or(n_layers);
        for (int64_t i = 0; i < n_layers; i++)
            c.layer_types.push_back(i >= mwl ? AttentionKind::Sliding : AttentionKind::Full);
    } else {
        c.layer_types.assign(size_t(n_layers), AttentionKind::Full);
    }

    c.query_pre_attn_scalar = f.num("query_pre_attn_scalar");
    if (gemma && !c.query_pre_attn_scalar) c.query_pre_attn_scalar = 256;
    if (c.query_pre_attn_scalar) check_positive(name, "query_pre_attn_scalar", *c.query_pre_attn_scalar);
    c.final_logit_softcapping = f.num("final_logit_softcapping");
    if (c.final_logit_softcapping) check_positive(name, "final_logit_softcapping", *c.final_logit_softcapping);
    c.attn_logit_softcapping = f.num("attn_logit_softcapping");
    if (c.attn_logit_softcapping) check_positive(name, "attn_logit_softcapping", *c.attn_logit_softcapping);

    if (auto act = f.str("hidden_activation")) c.hidden_act = *act;
    else if (auto act2 = f.str("hidden_act")) c.hidden_act = *act2;
    else c.hidden_act = gemma ? "gelu_pytorch_tanh" : "silu";

    c.bos_token_id = f.int_("bos_token_id");
    c.pad_token_id = f.int_("pad_token_id");
    c.eos_token_ids = f.ints("eos_token_id");
    if (c.bos_token_id) check_range(name, "bos_token_id", *c.bos_token_id, 0, kMaxTokenId);
    if (c.pad_token_id) check_range(name, "pad_token_id", *c.pad_token_id, 0, kMaxTokenId);
    for (int64_t e : c.eos_token_ids) check_range(name, "eos_token_id", e, 0, kMaxTokenId);
    if (auto d = f.str("torch_dtype")) c.torch_dtype = *d;
    else if (auto d2 = f.str("dtype")) c.torch_dtype = *d2;
    return c;
}

HfConfig HfConfig::load(const std::string& path) {
    std::error_code ec;
    const std::string file = fs::is_directory(path, ec) ? (fs::path(path) / "config.json").string() : path;
    return parse(read_text_file(file, 64u << 20), file);
}

GenerationConfig GenerationConfig::parse(std::string_view text, const std::string& name) {
    const json j = parse_json_text(text, name);
    if (!j.is_object()) raise(ErrorCode::InvalidFile, "{}: must be a JSON object, got {}", name, json_kind(j));
    GenerationConfig g;
    g.temperature = json_number(j, "temperature", name);
    g.top_p = json_number(j, "top_p", name);
    g.top_k = json_int(j, "top_k", name);
    g.min_p = json_number(j, "min_p", name);
    g.repetition_penalty = json_number(j, "repetition_penalty", name);
    g.do_sample = json_bool(j, "do_sample", name);
    g.max_new_tokens = json_int(j, "max_new_tokens", name);
    g.max_length = json_int(j, "max_length", name);
    g.bos_token_id = json_int(j, "bos_token_id", name);
    g.pad_token_id = json_int(j, "pad_token_id", name);
    g.eos_token_ids = json_int_or_list(j, "eos_token_id", name);

    auto bad = [&](const char* key, double v, const char* want) {
        raise(ErrorCode::InvalidFile, "{}: '{}' = {} must be {}", name, key, v, want);
    };
    if (g.temperature && !(*g.temperature >= 0 && std::isfinite(*g.temperature))) bad("temperature", *g.temperature, ">= 0");
    if (g.top_p && !(*g.top_p > 0 && *g.top_p <= 1)) bad("top_p", *g.top_p, "in (0, 1]");
    if (g.min_p && !(*g.min_p >= 0 && *g.min_p <= 1)) bad("min_p", *g.min_p, "in [0, 1]");
    if (g.repetition_penalty && !(*g.repetition_penalty > 0 && std::isfinite(*g.repetition_penalty)))
        bad("repetition_penalty", *g.repetition_penalty, "> 0");
    if (g.top_k && *g.top_k < 0) bad("top_k", double(*g.top_k), ">= 0");
    if (g.max_new_tokens && *g.max_new_tokens < 0) bad("max_new_tokens", double(*g.max_new_tokens), ">= 0");
    if (g.max_length && *g.max_length < 0) bad("max_length", double(*g.max_length), ">= 0");
    if (g.bos_token_id) check_range(name, "bos_token_id", *g.bos_token_id, 0, kMaxTokenId);
    if (g.pad_token_id) check_range(name, "pad_token_id", *g.pad_token_id, 0, kMaxTokenId);
    for (int64_t e : g.eos_token_ids) check_range(name, "eos_token_id", e, 0, kMaxTokenId);
    return g;
}

GenerationConfig GenerationConfig::load(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        const fs::path file = fs::path(path) / "generation_config.json";
        if (!fs::exists(file, ec)) return {};
        return parse(read_text_file(file.string(), 64u << 20), file.string());
    }
    return parse(read_text_file(path, 64u << 20), path);
}

}  // namespace osprey::formats
