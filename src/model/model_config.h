// ModelConfig: the architecture hyper-parameters a forward pass needs, read from GGUF metadata or config.json.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"

namespace osprey::formats {
class GgufFile;
}

namespace osprey::model {

enum class Arch { Llama, Qwen2, Qwen3, Gemma3 };
const char* arch_name(Arch arch);

enum class RopeScaling { None, Linear, Llama3 };

struct ModelConfig {
    Arch arch = Arch::Llama;
    std::string name;          // general.name or the folder name
    int n_layers = 0;
    int d_model = 0;
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    int d_ff = 0;
    int n_vocab = 0;
    int max_context = 0;       // the model's trained context length
    float rms_eps = 1e-5f;

    float rope_theta = 10000.0f;        // global (full-attention) layers
    float rope_theta_local = 10000.0f;  // sliding-window layers (gemma3)
    bool rope_neox = true;              // false for GGUF llama (q/k rows permuted for adjacent-pair rotation)
    RopeScaling rope_scaling = RopeScaling::None;
    float rope_factor = 1.0f;
    float rope_low_freq_factor = 1.0f;
    float rope_high_freq_factor = 4.0f;
    int rope_original_max_context = 8192;

    bool tied_embeddings = false;
    bool qkv_bias = false;
    bool qk_norm = false;
    bool sandwich_norms = false;        // gemma3: post-attention and post-FFN norms
    backend::Activation activation = backend::Activation::Silu;
    float embed_scale = 1.0f;           // gemma3: sqrt(d_model)
    float attn_scale = 0.0f;            // 0: 1 / sqrt(head_dim)
    float attn_softcap = 0.0f;
    float final_softcap = 0.0f;
    int sliding_window = 0;
    std::vector<bool> layer_sliding;    // [n_layers]: true where the layer uses the sliding window

    int q_dim() const { return n_heads * head_dim; }
    int kv_dim() const { return n_kv_heads * head_dim; }
    // Inverse frequencies of RoPE for a layer, scaling applied: [head_dim / 2].
    std::vector<float> rope_inv_freq(bool sliding_layer) const;
    // Throws Error(InvalidFile) when a value is missing, non-positive or inconsistent.
    void validate(const std::string& source) const;
};

// Reads the architecture from GGUF metadata ("<arch>.block_count", ...). Throws Error(Unsupported) for unknown archs.
ModelConfig config_from_gguf(const formats::GgufFile& file);

}  // namespace osprey::model
