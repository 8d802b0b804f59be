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

// Named shapes: llama-3.1-8b, llama-3.2-1b, qwen2.5-7b, qwen3-0.6b, smollm2-135m, mistral-7b, gemma-3-270m.
std::vector<std::string> synth_shape_names();

// The value synth writes at element `index` of a tensor of `kind` named `name` (for tests and checks).
float synth_value(uint64_t seed, const std::string& name, HfWeightKind kind, bool gemma, uint64_t index);

}  // namespace osprey::formats
