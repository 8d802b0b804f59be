// ModelConfig from a Hugging Face folder's config.json (parsed and type-checked by formats::HfConfig).
#include <cmath>

#include "core/error.h"
#include "formats/hf_config.h"
#include "model/model.h"

namespace osprey::model {

ModelConfig config_from_hf_folder(const std::string& dir) {
    const formats::HfConfig h = formats::HfConfig::load(dir);
    ModelConfig c;
    const std::string& t = h.model_type;
    if (t == "llama" || t == "mistral") c.arch = Arch::Llama;
    else if (t == "qwen2") c.arch = Arch::Qwen2;
    else if (t == "qwen3") c.arch = Arch::Qwen3;
    else if (t == "gemma3_text") c.arch = Arch::Gemma3;
    else raise(ErrorCode::Unsupported, "{}: model_type '{}' is not supported", dir, t);

    auto to_int = [&](int64_t v, const char* what) {
        if (v < 0 || v > (int64_t(1) << 30)) raise(ErrorCode::InvalidFile, "{}/config.json: {} = {} is out of range", dir, what, v);
        return int(v);
    };
    c.name = dir;
    c.n_layers = to_int(h.num_hidden_layers, "num_hidden_layers");
    c.d_model = to_int(h.hidden_size, "hidden_size");
    c.n_heads = to_int(h.num_attention_heads, "num_attention_heads");
    c.n_kv_heads = to_int(h.num_key_value_heads, "num_key_value_heads");
    c.head_dim = to_int(h.head_dim, "head_dim");
    c.d_ff = to_int(h.intermediate_size, "intermediate_size");
    c.n_vocab = to_int(h.vocab_size, "vocab_size");
    c.max_context = to_int(h.max_position_embeddings, "max_position_embeddings");
    c.rms_eps = float(h.rms_norm_eps);
    c.rope_theta = float(h.rope_theta);
    c.rope_theta_local = float(h.rope_local_base_freq.value_or(h.rope_theta));
    c.rope_neox = true;  // HF checkpoints rotate halves
    switch (h.rope_scaling.type) {
        case formats::RopeScalingType::None: c.rope_scaling = RopeScaling::None; break;
        case formats::RopeScalingType::Linear: c.rope_scaling = RopeScaling::Linear; break;
        case formats::RopeScalingType::Llama3: c.rope_scaling = RopeScaling::Llama3; break;
    }
    c.rope_factor = float(h.rope_scaling.factor);
    c.rope_low_freq_factor = float(h.rope_scaling.low_freq_factor);
    c.rope_high_freq_factor = float(h.rope_scaling.high_freq_factor);
    if (h.rope_scaling.original_max_position_embeddings > 0)
        c.rope_original_max_context = to_int(h.rope_scaling.original_max_position_embeddings, "rope_scaling");
    c.tied_embeddings = h.tie_word_embeddings;
    c.qkv_bias = h.attention_bias;
    c.qk_norm = h.qk_norm;
    c.layer_sliding.assign(size_t(c.n_layers), false);
    if (h.sliding_window) {  // HfConfig::layer_types already applies each model type's rules
        c.sliding_window = to_int(*h.sliding_window, "sliding_window");
        for (int i = 0; i < c.n_layers; i++) c.layer_sliding[size_t(i)] = c.sliding_window > 0 && h.is_sliding(i);
    }
    if (h.hidden_act == "silu") {
        c.activation = backend::Activation::Silu;
    } else if (h.hidden_act == "gelu_pytorch_tanh" || h.hidden_act == "gelu_tanh") {
        c.activation = backend::Activation::GeluTanh;
    } else {
        raise(ErrorCode::Unsupported, "{}/config.json: activation '{}' is not supported", dir, h.hidden_act);
    }
    if (c.arch == Arch::Gemma3) {
        c.sandwich_norms = true;
        c.embed_scale = std::sqrt(float(c.d_model));
        c.attn_scale = 1.0f / std::sqrt(float(h.query_pre_attn_scalar.value_or(double(c.head_dim))));
        c.rope_theta_local = float(h.rope_local_base_freq.value_or(10000.0));
    }
    c.final_softcap = float(h.final_logit_softcapping.value_or(0.0));
    c.attn_softcap = float(h.attn_logit_softcapping.value_or(0.0));
    c.validate(dir + "/config.json");
    return c;
}

}  // namespace osprey::model
