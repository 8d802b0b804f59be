// HfConfig / GenerationConfig: typed views of a Hugging Face model's config.json and generation_config.json.
//
// Supported model types: llama, mistral, qwen2, qwen3, gemma3 (multimodal wrapper: the text settings are read from
// "text_config", with Gemma3TextConfig's defaults for what it omits) and gemma3_text. Every field is type-checked;
// errors are Error(InvalidFile) naming the file and key ("config.json: 'num_hidden_layers' must be an integer, got
// string"), or Error(Unsupported) for valid but unhandled settings (another model_type, a yarn rope).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace osprey::formats {

enum class RopeScalingType { None, Linear, Llama3 };

struct RopeScaling {
    RopeScalingType type = RopeScalingType::None;
    double factor = 1.0;
    double low_freq_factor = 1.0;                   // llama3
    double high_freq_factor = 4.0;                  // llama3
    int64_t original_max_position_embeddings = 0;  // llama3
};

enum class AttentionKind : uint8_t { Full, Sliding };

struct HfConfig {
    std::string model_type;       // of the text model: llama, mistral, qwen2, qwen3, gemma3_text
    std::string file_model_type;  // as the file's top level says (gemma3 for the multimodal wrapper)
    std::vector<std::string> architectures;

    int64_t hidden_size = 0;
    int64_t intermediate_size = 0;
    int64_t num_hidden_layers = 0;
    int64_t num_attention_heads = 0;
    int64_t num_key_value_heads = 0;  // default: num_attention_heads
    int64_t head_dim = 0;             // default: hidden_size / num_attention_heads
    int64_t vocab_size = 0;
    int64_t max_position_embeddings = 0;

    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    std::optional<double> rope_local_base_freq;  // gemma3: the rope base of sliding layers
    RopeScaling rope_scaling;

    bool tie_word_embeddings = false;
    bool attention_bias = false;  // q/k/v projections carry a bias (qwen2 always; llama if attention_bias)
    bool qk_norm = false;         // per-head RMSNorm of q and k (qwen3, gemma3); implied by model_type

    std::optional<int64_t> sliding_window;  // tokens; only used by layers whose kind is Sliding
    bool use_sliding_window = false;        // qwen2/qwen3 flag
    std::vector<AttentionKind> layer_types; // one per layer, always filled

    std::optional<double> query_pre_attn_scalar;  // gemma3: q is scaled by 1/sqrt(this)
    std::optional<double> final_logit_softcapping;
    std::optional<double> attn_logit_softcapping;
    std::string hidden_act = "silu";  // hidden_activation (gemma) or hidden_act

    std::optional<int64_t> bos_token_id;
    std::optional<int64_t> pad_token_id;
    std::vector<int64_t> eos_token_ids;  // eos_token_id: an int or a list
    std::string torch_dtype;             // "bfloat16", ... ("" when absent)

    // Parses config.json text; `name` is used in messages.
    static HfConfig parse(std::string_view json_text, const std::string& name = "config.json");
    // Reads PATH (a config.json file, or a model folder holding one).
    static HfConfig load(const std::string& path);

    bool is_sliding(int64_t layer) const { return layer_types.at(size_t(layer)) == AttentionKind::Sliding; }
};

struct GenerationConfig {
    std::optional<double> temperature;
    std::optional<double> top_p;
    std::optional<int64_t> top_k;
    std::optional<double> min_p;
    std::optional<double> repetition_penalty;
    std::optional<bool> do_sample;
    std::optional<int64_t> max_new_tokens;
    std::optional<int64_t> max_length;
    std::optional<int64_t> bos_token_id;
    std::optional<int64_t> pad_token_id;
    std::vector<int64_t> eos_token_ids;  // eos_token_id: an int or a list

    static GenerationConfig parse(std::string_view json_text, const std::string& name = "generation_config.json");
    // Reads PATH (a generation_config.json file, or a model folder: absent there -> all fields unset).
    static GenerationConfig load(const std::string& path);
};

}  // namespace osprey::formats
