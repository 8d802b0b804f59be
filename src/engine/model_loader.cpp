#include "engine/model_loader.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/safetensors_model.h"

namespace osprey::engine {

LoadedModel::LoadedModel() = default;
LoadedModel::~LoadedModel() = default;
LoadedModel::LoadedModel(LoadedModel&&) noexcept = default;
LoadedModel& LoadedModel::operator=(LoadedModel&&) noexcept = default;

std::string model_cache_dir() {
    if (const char* dir = std::getenv("OSPREY_MODEL_CACHE"); dir && *dir) return dir;
    const char* home = std::getenv("HOME");
    return std::string(home ? home : ".") + "/.cache/osprey/models";
}

std::string default_model_path() { return model_cache_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

namespace {

// Touches one byte per page of every tensor so the first forward pass does not pay for page faults.
void prefetch(const model::WeightSource& src, const LoadOptions& opt) {
    size_t total = 0;
    std::vector<Tensor> views;
    for (const std::string& name : src.tensor_names)
        if (auto t = src.find(name)) {
            views.push_back(*t);
            total += t->n_bytes();
        }
    size_t done = 0;
    volatile uint8_t sink = 0;
    for (const Tensor& t : views) {
        const auto* p = static_cast<const uint8_t*>(t.data);
        for (size_t off = 0; off < t.n_bytes(); off += 4096) sink = sink + p[off];
        done += t.n_bytes();
        if (opt.on_progress && total) opt.on_progress(double(done) / double(total));
    }
    (void)sink;
}

}  // namespace

LoadedModel load_model(const std::string& path, backend::Backend& backend, const LoadOptions& options) {
    const auto t0 = std::chrono::steady_clock::now();
    namespace fs = std::filesystem;
    if (!fs::exists(path)) raise(ErrorCode::NotFound, "{}: no such model file or folder", path);
    LoadedModel m;
    m.path = path;
    model::WeightSource source;
    if (fs::is_directory(path)) {
        m.safetensors = std::make_unique<formats::SafetensorsModel>(path);
        m.config = model::config_from_hf_folder(path);
        source = model::safetensors_weight_source(*m.safetensors);
        const std::string tok = path + "/tokenizer.json";
        if (fs::exists(tok)) {
            const std::string cfg = path + "/tokenizer_config.json";
            m.tokenizer = std::make_unique<tokenizer::Tokenizer>(
                tokenizer::Tokenizer::from_hf_json(tok, fs::exists(cfg) ? cfg : ""));
        } else if (options.need_tokenizer) {
            raise(ErrorCode::NotFound, "{}: no tokenizer.json in the model folder", path);
        }
    } else {
        m.gguf = std::make_unique<formats::GgufFile>(path);
        m.config = model::config_from_gguf(*m.gguf);
        source = model::gguf_weight_source(*m.gguf);
        if (m.gguf->find("tokenizer.ggml.tokens"))
            m.tokenizer = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(*m.gguf));
        else if (options.need_tokenizer)
            raise(ErrorCode::InvalidFile, "{}: the GGUF file has no tokenizer", path);
    }
    if (options.prefetch) prefetch(source, options);
    m.model = std::make_unique<model::Model>(m.config, source, backend);
    m.model->set_graphs_enabled(!options.enforce_eager);
    m.load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return m;
}

}  // namespace osprey::engine
