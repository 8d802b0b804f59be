// synthesize_hf_model: writes a Hugging Face model folder with seeded random weights in the exact tensor names and
// shapes of a real model (config.json with the model's real values, generation_config.json, model.safetensors or
// shards + index, optionally a tokenizer). Backs `osprey synth`: random-weight benchmark models of production size.
//
// Weights stream tensor by tensor into the files (the model is never held in memory). Values are a deterministic
// function of (seed, tensor name, element index), independent of the thread count: matrices and embeddings are
// ~normal with std 0.02 (sum of four uniforms, bounded at +-3.5 std), norms are 1 (0 for Gemma, whose RMSNorm
// scales by 1 + w), biases ~normal with std 0.02.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/hf_config.h"
#include "formats/hf_weights.h"

namespace osprey::formats {

struct SynthOptions {
    std::string shape;        // a named shape (synth_shape_names()), or
    std::string config_path;  // a config.json (a folder holding one is fine; a generation_config.json next to it is copied)
    DType dtype = DType::BF16;          // BF16, F16 or F32
    std::string tokenizer_dir;          // optional: tokenizer.json (+ tokenizer_config.json) copied from here
    uint64_t seed = 0;
    int64_t n_layers = 0;               // > 0: override num_hidden_layers (small test models)
    std::string out_dir;
    uint64_t max_shard_bytes = 4ull << 30;  // larger models are sharded with an index
    int n_threads = 0;                      // <= 0: all cores
    std::function<void(uint64_t done_bytes, uint64_t total_bytes)> on_progress;  // optional
};

struct SynthResult {
    HfConfig config;
    std::vector<std::string> files;  // written, relative to out_dir
    uint64_t weight_bytes = 0;
};

SynthResult synthesize_hf_model(const SynthOptions& options);

// The model a synth writes: the named shape's (or the given file's) config with the layer override applied.
struct SynthModelSpec {
    HfConfig config;
    GenerationConfig generation;
    std::string config_json;      // config.json text (torch_dtype as the source says)
    std::string generation_json;  // generation_config.json text (BOS/EOS from the config when the source has none)
};
SynthModelSpec resolve_synth_model(const std::string& shape, const std::string& config_path, int64_t n_layers);

// Named shapes: llama-3.1-8b, llama-3.2-1b, qwen2.5-7b, qwen3-0.6b, smollm2-135m, mistral-7b, gemma-3-270m.
std::vector<std::string> synth_shape_names();

// The value synth writes at element `index` of a tensor of `kind` named `name` (for tests and checks).
float synth_value(uint64_t seed, const std::string& name, HfWeightKind kind, bool gemma, uint64_t index);
// The same values in bulk: out[i] = synth_value(seed, name, kind, gemma, begin + i) for i < n, where
// tensor_seed = synth_tensor_seed(seed, name) (hoisted out of the per-element loop).
uint64_t synth_tensor_seed(uint64_t seed, const std::string& name);
void synth_fill(uint64_t tensor_seed, HfWeightKind kind, bool gemma, uint64_t begin, int64_t n, float* out);

}  // namespace osprey::formats
