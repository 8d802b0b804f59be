// Loading a model by path: a GGUF file or a Hugging Face folder (config.json + safetensors + tokenizer.json).
// The LoadedModel owns the mapped files; its Model's weights are views into them on the CPU.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace osprey::formats {
class GgufFile;
class SafetensorsModel;
}  // namespace osprey::formats

namespace osprey::engine {

struct LoadedModel {
    std::string path;
    std::unique_ptr<formats::GgufFile> gguf;
    std::unique_ptr<formats::SafetensorsModel> safetensors;
    model::ModelConfig config;
    std::unique_ptr<model::Model> model;
    std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when the folder has none and none was required
    double load_seconds = 0;

    LoadedModel();
    ~LoadedModel();
    LoadedModel(LoadedModel&&) noexcept;
    LoadedModel& operator=(LoadedModel&&) noexcept;
};

struct LoadOptions {
    bool need_tokenizer = true;
    bool prefetch = true;  // read every weight page once (honest load time, no page faults in the first step)
    std::function<void(double fraction)> on_progress;  // called while prefetching
    bool enforce_eager = false;  // no op graphs: every step launches op by op (see Model::forward)
};

// Throws Error(NotFound/InvalidFile/Unsupported).
LoadedModel load_model(const std::string& path, backend::Backend& backend, const LoadOptions& options);

// The default model: SmolLM2-135M-Instruct Q4_1 in $OSPREY_MODEL_CACHE (default ~/.cache/osprey/models).
std::string default_model_path();
std::string model_cache_dir();

}  // namespace osprey::engine
