// osprey inspect: architecture, tensor types, parameter count, bytes and KV bytes per token of a model.
#include <cstdio>
#include <map>

#include "backend/cpu/cpu_backend.h"
#include "cli/commands.h"
#include "engine/model_loader.h"
#include "formats/gguf.h"
#include "formats/safetensors_model.h"
#include "kv/paged_kv_cache.h"

namespace osprey::cli {

namespace {

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    return fmt::format("{:.2f} {}", b, units[u]);
}

void inspect(const std::string& path) {
    auto backend = backend::make_cpu_backend(1);
    engine::LoadOptions lo;
    lo.need_tokenizer = false;
    lo.prefetch = false;
    engine::LoadedModel m = engine::load_model(path, *backend, lo);
    const model::ModelConfig& c = m.config;

    std::map<std::string, std::pair<int, size_t>> types;  // dtype -> (tensors, bytes)
    size_t file_tensor_bytes = 0;
    if (m.gguf) {
        for (const auto& t : m.gguf->tensors()) {
            auto& e = types[std::string(dtype_name(t.dtype))];
            e.first++;
            e.second += t.n_bytes;
            file_tensor_bytes += t.n_bytes;
        }
    } else {
        for (const std::string& name : m.safetensors->tensor_names()) {
            const auto* t = m.safetensors->find_tensor(name);
            auto& e = types[std::string(dtype_name(t->dtype))];
            e.first++;
            e.second += t->n_bytes;
            file_tensor_bytes += t->n_bytes;
        }
    }
    int n_sliding = 0;
    for (bool s : c.layer_sliding) n_sliding += s;
    kv::KvCacheShape kv{c.n_layers, c.n_kv_heads, c.head_dim, 16, DType::F32};
    kv::KvCacheShape kv16 = kv;
    kv16.dtype = DType::F16;

    std::printf("model          %s\n", path.c_str());
    std::printf("name           %s\n", c.name.c_str());
    std::printf("architecture   %s\n", model::arch_name(c.arch));
    std::printf("layers         %d (hidden %d, FFN %d)\n", c.n_layers, c.d_model, c.d_ff);
    std::printf("attention      %d query heads, %d KV heads, head dim %d%s%s\n", c.n_heads, c.n_kv_heads, c.head_dim,
                c.qkv_bias ? ", qkv bias" : "", c.qk_norm ? ", QK-norm" : "");
    if (c.sliding_window > 0)
        std::printf("sliding window %d tokens on %d of %d layers\n", c.sliding_window, n_sliding, c.n_layers);
    std::printf("rope           theta %g%s%s\n", double(c.rope_theta), c.rope_neox ? " (neox)" : " (adjacent pairs)",
                c.rope_scaling == model::RopeScaling::Llama3   ? ", llama3 scaling"
                : c.rope_scaling == model::RopeScaling::Linear ? ", linear scaling"
                                                                : "");
    std::printf("vocabulary     %d%s\n", c.n_vocab, c.tied_embeddings ? " (tied embeddings)" : "");
    std::printf("context        %d tokens\n", c.max_context);
    std::printf("parameters     %.1f M\n", double(m.model->n_params()) / 1e6);
    std::printf("tensor bytes   %s\n", human_bytes(double(file_tensor_bytes)).c_str());
    std::printf("tensor types  ");
    for (const auto& [name, e] : types) std::printf(" %s x%d (%s)", name.c_str(), e.first, human_bytes(double(e.second)).c_str());
    std::printf("\n");
    std::printf("KV bytes/token %zu (f32), %zu (f16)\n", kv.bytes_per_token(), kv16.bytes_per_token());
}

}  // namespace

void register_inspect_command(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("inspect", "Print a model's architecture, tensor types, sizes and KV bytes");
    cmd->add_option("model", *path, "GGUF file or Hugging Face folder")->required();
    cmd->callback([path] { inspect(*path); });
}

}  // namespace osprey::cli
