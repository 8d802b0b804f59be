#include "formats/hf_weights.h"

#include <fmt/format.h>

namespace osprey::formats {

std::vector<HfWeightSpec> hf_weight_specs(const HfConfig& c) {
    const int64_t h = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
    const int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
    const bool gemma = c.model_type == "gemma3_text";
    const bool qkv_bias = c.model_type == "qwen2" || (c.attention_bias && c.model_type != "mistral");
    const bool o_bias = c.attention_bias && c.model_type != "qwen2" && c.model_type != "mistral";

    std::vector<HfWeightSpec> w;
    w.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, HfWeightKind::Embedding});
    for (int64_t l = 0; l < c.num_hidden_layers; l++) {
        const std::string p = fmt::format("model.layers.{}.", l);
        w.push_back({p + "input_layernorm.weight", {h}, HfWeightKind::Norm});
        w.push_back({p + "self_attn.q_proj.weight", {q, h}, HfWeightKind::Matrix});
        w.push_back({p + "self_attn.k_proj.weight", {kv, h}, HfWeightKind::Matrix});
        w.push_back({p + "self_attn.v_proj.weight", {kv, h}, HfWeightKind::Matrix});
        if (qkv_bias) {
            w.push_back({p + "self_attn.q_proj.bias", {q}, HfWeightKind::Bias});
            w.push_back({p + "self_attn.k_proj.bias", {kv}, HfWeightKind::Bias});
            w.push_back({p + "self_attn.v_proj.bias", {kv}, HfWeightKind::Bias});
        }
        w.push_back({p + "self_attn.o_proj.weight", {h, q}, HfWeightKind::Matrix});
        if (o_bias) w.push_back({p + "self_attn.o_proj.bias", {h}, HfWeightKind::Bias});
        if (c.qk_norm) {
            w.push_back({p + "self_attn.q_norm.weight", {hd}, HfWeightKind::Norm});
            w.push_back({p + "self_attn.k_norm.weight", {hd}, HfWeightKind::Norm});
        }
        w.push_back({p + "post_attention_layernorm.weight", {h}, HfWeightKind::Norm});
        if (gemma) {
            w.push_back({p + "pre_feedforward_layernorm.weight", {h}, HfWeightKind::Norm});
            w.push_back({p + "post_feedforward_layernorm.weight", {h}, HfWeightKind::Norm});
        }
        w.push_back({p + "mlp.gate_proj.weight", {f, h}, HfWeightKind::Matrix});
        w.push_back({p + "mlp.up_proj.weight", {f, h}, HfWeightKind::Matrix});
        w.push_back({p + "mlp.down_proj.weight", {h, f}, HfWeightKind::Matrix});
    }
    w.push_back({"model.norm.weight", {h}, HfWeightKind::Norm});
    if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, h}, HfWeightKind::Matrix});
    return w;
}

}  // namespace osprey::formats
