// The weight tensors a Hugging Face checkpoint of a supported architecture holds: names and shapes as transformers
// writes them (model.layers.N.self_attn.q_proj.weight ...), derived from an HfConfig. Used by `osprey synth` to write
// random models and by loaders to check a folder is complete.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/hf_config.h"

namespace osprey::formats {

enum class HfWeightKind : uint8_t { Embedding, Matrix, Bias, Norm };

struct HfWeightSpec {
    std::string name;
    std::vector<int64_t> shape;  // outermost first: a projection is {n_out, n_in}
    HfWeightKind kind = HfWeightKind::Matrix;
};

// In checkpoint order: embeddings, then each layer, then the final norm and lm_head (absent when tied).
// Attention biases: qwen2 has q/k/v; llama, qwen3 and gemma3 with attention_bias have q/k/v/o; mistral has none.
std::vector<HfWeightSpec> hf_weight_specs(const HfConfig& config);

}  // namespace osprey::formats
