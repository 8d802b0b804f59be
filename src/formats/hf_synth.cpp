#include "formats/hf_synth.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/json_util.h"
#include "formats/safetensors.h"

namespace osprey::formats {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// Public config.json / generation_config.json values of the named models (Hugging Face Hub).
struct NamedShape {
    const char* name;
    const char* config;
    const char* generation;
};

const NamedShape kShapes[] = {
    {"llama-3.1-8b",  // meta-llama/Llama-3.1-8B-Instruct
     R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true,
  "vocab_size": 128256})",
     R"({"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6,
  "top_p": 0.9})"},
    {"llama-3.2-1b",  // meta-llama/Llama-3.2-1B-Instruct
     R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16,
  "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0,
  "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.45.0",
  "use_cache": true, "vocab_size": 128256})",
     R"({"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6,
  "top_p": 0.9})"},
    {"qwen2.5-7b",  // Qwen/Qwen2.5-7B-Instruct
     R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
  "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen2",
  "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false, "vocab_size": 152064})",
     R"({"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
  "repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20})"},
    {"qwen3-0.6b",  // Qwen/Qwen3-0.6B
     R"({"architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
  "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960, "max_window_layers": 28,
  "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936})",
     R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
  "temperature": 0.6, "top_k": 20, "top_p": 0.95})"},
    {"smollm2-135m",  // HuggingFaceTB/SmolLM2-135M-Instruct
     R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576, "initializer_range": 0.041666666666666664,
  "intermediate_size": 1536, "is_llama_config": true, "max_position_embeddings": 8192, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
  "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true,
  "vocab_size": 49152})",
     R"({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2})"},
    {"mistral-7b",  // mistralai/Mistral-7B-v0.1
     R"({"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
  "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})",
     R"({"bos_token_id": 1, "eos_token_id": 2})"},
    {"gemma-3-270m",  // google/gemma-3-270m
     R"({"_sliding_window_pattern": 6, "architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": 1,
  "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 640,
  "initializer_range": 0.02, "intermediate_size": 2048, "layer_types": ["sliding_attention", "sliding_attention",
  "sliding_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
  "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
  "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
  "full_attention"], "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
  "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0, "rope_scaling": null, "rope_theta": 1000000.0,
  "sliding_window": 512, "torch_dtype": "bfloat16", "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false, "use_cache": true, "vocab_size": 262144})",
     R"({"bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": true, "eos_token_id": [1, 106],
  "pad_token_id": 0, "top_k": 64, "top_p": 0.95})"},
};

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t tensor_seed(uint64_t seed, const std::string& name) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
    for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
    return mix64(seed * 0x9e3779b97f4a7c15ull ^ h);
}

// ~N(0, std^2): the sum of four 16-bit uniforms from one 64-bit draw, centred and scaled (Irwin-Hall, n = 4).
inline float normal_from(uint64_t r, float std) {
    const uint32_t s = uint32_t(r & 0xffff) + uint32_t((r >> 16) & 0xffff) + uint32_t((r >> 32) & 0xffff) +
                       uint32_t(r >> 48);
    constexpr float kMean = 4 * 32767.5f;
    constexpr float kInvSd = 1.0f / 37837.23f;  // sqrt(4 * (65536^2 - 1) / 12)
    return (float(s) - kMean) * kInvSd * std;
}

inline float value_at(uint64_t tseed, HfWeightKind kind, bool gemma, uint64_t i) {
    if (kind == HfWeightKind::Norm) return gemma ? 0.0f : 1.0f;
    return normal_from(mix64(tseed + (i + 1) * 0x9e3779b97f4a7c15ull), 0.02f);
}

const char* torch_dtype_name(DType d) {
    switch (d) {
        case DType::BF16: return "bfloat16";
        case DType::F16: return "float16";
        case DType::F32: return "float32";
        default: raise(ErrorCode::InvalidArgument, "synth writes bf16, f16 or f32 weights, not {}", dtype_name(d));
    }
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) raise(ErrorCode::Io, "{}: write failed", path.string());
}

// Truncates/sets num_hidden_layers (and layer_types) in a config object.
void override_layers(ojson& cfg, int64_t n_layers) {
    if (auto it = cfg.find("layer_types"); it != cfg.end() && it->is_array()) {
        if (n_layers > int64_t(it->size()))
            raise(ErrorCode::InvalidArgument, "--n-layers {} is more than the {} layers the config's layer_types list",
                  n_layers, it->size());
        it->erase(it->begin() + n_layers, it->end());
    }
    cfg["num_hidden_layers"] = n_layers;
}

}  // namespace

std::vector<std::string> synth_shape_names() {
    std::vector<std::string> out;
    for (const NamedShape& s : kShapes) out.push_back(s.name);
    return out;
}

float synth_value(uint64_t seed, const std::string& name, HfWeightKind kind, bool gemma, uint64_t index) {
    return value_at(tensor_seed(seed, name), kind, gemma, index);
}

uint64_t synth_tensor_seed(uint64_t seed, const std::string& name) { return tensor_seed(seed, name); }

void synth_fill(uint64_t tensor_seed, HfWeightKind kind, bool gemma, uint64_t begin, int64_t n, float* out) {
    for (int64_t i = 0; i < n; i++) out[i] = value_at(tensor_seed, kind, gemma, begin + uint64_t(i));
}

SynthModelSpec resolve_synth_model(const std::string& shape, const std::string& config_path, int64_t n_layers) {
    if (shape.empty() == config_path.empty())
        raise(ErrorCode::InvalidArgument, "synth: give exactly one of --shape NAME and --config config.json");
    ojson cfg;
    std::string gen_text;
    if (!shape.empty()) {
        const NamedShape* found = nullptr;
        for (const NamedShape& s : kShapes)
            if (shape == s.name) found = &s;
        if (!found) {
            std::string names;
            for (const NamedShape& s : kShapes) names += std::string(names.empty() ? "" : ", ") + s.name;
            raise(ErrorCode::InvalidArgument, "synth: unknown shape '{}' (known: {})", shape, names);
        }
        cfg = ojson::parse(found->config);
        gen_text = found->generation;
    } else {
        std::error_code ec;
        fs::path cpath = config_path;
        if (fs::is_directory(cpath, ec)) cpath /= "config.json";
        const std::string text = read_text_file(cpath.string(), 64u << 20);
        (void)HfConfig::parse(text, cpath.string());  // validates with clear messages
        cfg = ojson::parse(text);
        const fs::path gpath = cpath.parent_path() / "generation_config.json";
        if (fs::exists(gpath, ec)) {
            gen_text = read_text_file(gpath.string(), 64u << 20);
            (void)GenerationConfig::parse(gen_text, gpath.string());
        }
    }
    if (cfg.value("model_type", "") == "gemma3")
        raise(ErrorCode::Unsupported, "synth writes text-only models: give the gemma3_text config (the text_config "
              "part of a multimodal gemma3 config)");
    if (n_layers < 0 || n_layers > 4096) raise(ErrorCode::InvalidArgument, "synth: --n-layers {} is out of range", n_layers);
    if (n_layers > 0) override_layers(cfg, n_layers);

    SynthModelSpec spec;
    spec.config = HfConfig::parse(cfg.dump(), "config.json");
    const HfConfig& c = spec.config;
    if (gen_text.empty()) {
        ojson g = ojson::object();
        if (c.bos_token_id) g["bos_token_id"] = *c.bos_token_id;
        if (c.eos_token_ids.size() == 1) g["eos_token_id"] = c.eos_token_ids[0];
        else if (!c.eos_token_ids.empty()) g["eos_token_id"] = c.eos_token_ids;
        gen_text = g.dump(2);
    } else {
        gen_text = ojson::parse(gen_text).dump(2);
    }
    spec.config_json = cfg.dump(2);
    spec.generation_json = gen_text;
    spec.generation = GenerationConfig::parse(gen_text, "generation_config.json");
    return spec;
}

SynthResult synthesize_hf_model(const SynthOptions& o) {
    if (o.out_dir.empty()) raise(ErrorCode::InvalidArgument, "synth: an output folder (-o) is needed");
    const char* torch_dtype = torch_dtype_name(o.dtype);
    const SynthModelSpec spec = resolve_synth_model(o.shape, o.config_path, o.n_layers);
    ojson cfg = ojson::parse(spec.config_json);
    const std::string& gen_text = spec.generation_json;
    cfg["torch_dtype"] = torch_dtype;

    SynthResult result;
    result.config = HfConfig::parse(cfg.dump(), "config.json");
    const HfConfig& c = result.config;
    const bool gemma = c.model_type == "gemma3_text";

    std::error_code ec;
    fs::create_directories(o.out_dir, ec);
    if (!fs::is_directory(o.out_dir, ec)) raise(ErrorCode::Io, "{}: cannot create the output folder", o.out_dir);
    const fs::path out = o.out_dir;
    // Remove weights of an earlier synth here, so a folder never mixes single-file and sharded layouts.
    for (const auto& e : fs::directory_iterator(out, ec)) {
        const std::string n = e.path().filename().string();
        if (n == "model.safetensors" || n == "model.safetensors.index.json" ||
            (n.rfind("model-", 0) == 0 && n.size() > 12 && n.substr(n.size() - 12) == ".safetensors"))
            fs::remove(e.path(), ec);
    }

    // Plan the shards: tensors in checkpoint order, a new shard when the next tensor would pass the limit.
    const std::vector<HfWeightSpec> weights = hf_weight_specs(c);
    std::vector<std::vector<SafetensorsTensorSpec>> shards(1);
    std::vector<uint64_t> shard_bytes(1, 0);
    for (const HfWeightSpec& w : weights) {
        SafetensorsTensorSpec spec{w.name, o.dtype, w.shape, nullptr};
        const uint64_t n = spec.n_bytes();
        if (!shards.back().empty() && shard_bytes.back() + n > o.max_shard_bytes) {
            shards.emplace_back();
            shard_bytes.push_back(0);
        }
        shards.back().push_back(spec);
        shard_bytes.back() += n;
        result.weight_bytes += n;
    }
    std::map<std::string, HfWeightKind> kind_of;
    for (const HfWeightSpec& w : weights) kind_of[w.name] = w.kind;

    ThreadPool pool(o.n_threads);
    constexpr int64_t kChunk = int64_t(1) << 22;  // elements generated per step (16 MB of f32)
    std::vector<float> f32(o.dtype == DType::F32 ? size_t(kChunk) : 0);
    std::vector<uint16_t> half(o.dtype == DType::F32 ? 0 : size_t(kChunk));
    uint64_t done = 0;
    const size_t n_shards = shards.size();
    ojson weight_map = ojson::object();
    for (size_t s = 0; s < n_shards; s++) {
        const std::string file =
            n_shards == 1 ? "model.safetensors"
                          : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n_shards);
        SafetensorsWriter writer((out / file).string(), shards[s], {{"format", "pt"}});
        for (const SafetensorsTensorSpec& t : shards[s]) {
            weight_map[t.name] = file;
            const uint64_t tseed = tensor_seed(o.seed, t.name);
            const HfWeightKind kind = kind_of.at(t.name);
            int64_t numel = 1;
            for (int64_t d : t.shape) numel *= d;
            for (int64_t begin = 0; begin < numel; begin += kChunk) {
                const int64_t n = std::min(kChunk, numel - begin);
                pool.parallel_for(n, 4096, [&](int64_t b, int64_t e) {
                    for (int64_t i = b; i < e; i++) {
                        const float v = value_at(tseed, kind, gemma, uint64_t(begin + i));
                        if (o.dtype == DType::F32) f32[size_t(i)] = v;
                        else if (o.dtype == DType::BF16) half[size_t(i)] = fp32_to_bf16(v);
                        else half[size_t(i)] = fp32_to_fp16(v);
                    }
                });
                const size_t bytes = size_t(n) * (o.dtype == DType::F32 ? 4 : 2);
                writer.append(o.dtype == DType::F32 ? static_cast<const void*>(f32.data()) : half.data(), bytes);
                done += bytes;
                if (o.on_progress) o.on_progress(done, result.weight_bytes);
            }
        }
        writer.finish();
        result.files.push_back(file);
    }
    if (n_shards > 1) {
        ojson index = {{"metadata", {{"total_size", result.weight_bytes}}}, {"weight_map", weight_map}};
        write_text(out / "model.safetensors.index.json", index.dump(2) + "\n");
        result.files.push_back("model.safetensors.index.json");
    }
    write_text(out / "config.json", cfg.dump(2) + "\n");
    write_text(out / "generation_config.json", gen_text + "\n");
    result.files.push_back("config.json");
    result.files.push_back("generation_config.json");

    if (!o.tokenizer_dir.empty()) {
        const fs::path tdir = o.tokenizer_dir;
        if (!fs::exists(tdir / "tokenizer.json", ec))
            raise(ErrorCode::NotFound, "{}: no tokenizer.json in the --tokenizer folder", o.tokenizer_dir);
        for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}) {
            if (!fs::exists(tdir / name, ec)) continue;
            fs::copy_file(tdir / name, out / name, fs::copy_options::overwrite_existing, ec);
            if (ec) raise(ErrorCode::Io, "{}: cannot copy to {} ({})", (tdir / name).string(), o.out_dir, ec.message());
            fs::permissions(out / name, fs::perms::owner_write, fs::perm_options::add, ec);
            result.files.push_back(name);
        }
    }
    return result;
}

}  // namespace osprey::formats
