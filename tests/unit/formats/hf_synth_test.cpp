// synthesize_hf_model round trip: a small synth model read back with SafetensorsModel and HfConfig. Expected names
// and shapes are written out here from the Hugging Face checkpoint layout (not taken from hf_weights.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include "unit/temp_dir.h"
#include "core/error.h"
#include "core/half.h"
#include "formats/hf_config.h"
#include "formats/hf_synth.h"
#include "formats/safetensors_model.h"

using namespace osprey;
using namespace osprey::formats;
namespace fs = std::filesystem;

namespace {

using osprey::testing::TempDir;

// name -> shape for a llama-layout model (HF names), by hand.
std::map<std::string, std::vector<int64_t>> llama_layout(int64_t layers, int64_t h, int64_t ffn, int64_t q, int64_t kv,
                                                         int64_t vocab, bool tied, bool qkv_bias) {
    std::map<std::string, std::vector<int64_t>> m;
    m["model.embed_tokens.weight"] = {vocab, h};
    m["model.norm.weight"] = {h};
    if (!tied) m["lm_head.weight"] = {vocab, h};
    for (int64_t i = 0; i < layers; i++) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        m[p + "input_layernorm.weight"] = {h};
        m[p + "post_attention_layernorm.weight"] = {h};
        m[p + "self_attn.q_proj.weight"] = {q, h};
        m[p + "self_attn.k_proj.weight"] = {kv, h};
        m[p + "self_attn.v_proj.weight"] = {kv, h};
        m[p + "self_attn.o_proj.weight"] = {h, q};
        m[p + "mlp.gate_proj.weight"] = {ffn, h};
        m[p + "mlp.up_proj.weight"] = {ffn, h};
        m[p + "mlp.down_proj.weight"] = {h, ffn};
        if (qkv_bias) {
            m[p + "self_attn.q_proj.bias"] = {q};
            m[p + "self_attn.k_proj.bias"] = {kv};
            m[p + "self_attn.v_proj.bias"] = {kv};
        }
    }
    return m;
}

// Writes a small config.json of the given model type (real configs' key set, tiny sizes) and returns its path.
std::string small_config(const fs::path& dir, const std::string& model_type, const std::string& extra = "") {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << R"({"architectures": ["X"], "model_type": ")" << model_type
                                       << R"(", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 1000,
        "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "bos_token_id": 1, "eos_token_id": [2, 3])" << extra << "}";
    return (dir / "config.json").string();
}

}  // namespace

TEST(HfSynth, SmolLM2RoundTrip) {
    TempDir tmp;
    SynthOptions o;
    o.shape = "smollm2-135m";
    o.n_layers = 2;
    o.dtype = DType::F32;
    o.seed = 3;
    o.out_dir = tmp.path.string();
    o.tokenizer_dir = std::string(OSPREY_SHARED_DIR) + "/data/tokenizers/llama3";
    uint64_t last_progress = 0;
    o.on_progress = [&](uint64_t done, uint64_t total) {
        EXPECT_GE(done, last_progress);
        EXPECT_LE(done, total);
        last_progress = done;
    };
    synthesize_hf_model(o);

    const HfConfig c = HfConfig::load(tmp.path.string());
    EXPECT_EQ(c.num_hidden_layers, 2);
    EXPECT_EQ(c.hidden_size, 576);
    EXPECT_EQ(c.num_key_value_heads, 3);
    EXPECT_EQ(c.vocab_size, 49152);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
    EXPECT_EQ(c.torch_dtype, "float32");
    EXPECT_EQ(GenerationConfig::load(tmp.path.string()).eos_token_ids, (std::vector<int64_t>{2}));
    if (fs::exists(o.tokenizer_dir)) {
        EXPECT_TRUE(fs::exists(tmp.path / "tokenizer.json"));
        EXPECT_TRUE(fs::exists(tmp.path / "tokenizer_config.json"));
    }

    const SafetensorsModel m(tmp.path.string());
    EXPECT_FALSE(m.is_sharded());
    EXPECT_EQ(m.metadata().at("format"), "pt");
    const auto want = llama_layout(2, 576, 1536, 576, 192, 49152, true, false);
    std::set<std::string> want_names;
    for (const auto& [name, shape] : want) want_names.insert(name);
    const auto names = m.tensor_names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), want_names);
    uint64_t total = 0;
    for (const auto& [name, shape] : want) {
        const SafetensorsTensorInfo& t = m.tensor(name);
        EXPECT_EQ(t.shape, shape) << name;
        EXPECT_EQ(t.dtype, DType::F32) << name;
        total += t.n_bytes;
    }
    EXPECT_EQ(last_progress, total);

    // Norms are exactly 1; matrices have mean ~0 and std ~0.02 (scalar statistics over the stored floats).
    const auto* norm = reinterpret_cast<const float*>(m.tensor("model.layers.1.input_layernorm.weight").data);
    for (int i = 0; i < 576; i++) ASSERT_EQ(norm[i], 1.0f);
    const SafetensorsTensorInfo& q = m.tensor("model.layers.0.self_attn.q_proj.weight");
    const auto* qv = reinterpret_cast<const float*>(q.data);
    double sum = 0, sq = 0;
    const int64_t n = q.numel();
    for (int64_t i = 0; i < n; i++) {
        ASSERT_TRUE(std::isfinite(qv[i]));
        sum += qv[i];
        sq += double(qv[i]) * qv[i];
    }
    const double mean = sum / double(n), sd = std::sqrt(sq / double(n) - mean * mean);
    EXPECT_NEAR(mean, 0.0, 5e-4);
    EXPECT_NEAR(sd, 0.02, 5e-4);
    const auto* kv = reinterpret_cast<const float*>(m.tensor("model.layers.0.self_attn.k_proj.weight").data);
    EXPECT_NE(std::memcmp(qv, kv, 64), 0);  // tensors differ
}

TEST(HfSynth, DeterministicAndSeedDependent) {
    TempDir a, b, c, cfg;
    const std::string config = small_config(cfg.path, "qwen3");
    auto run = [&](const fs::path& dir, uint64_t seed, int threads) {
        SynthOptions o;
        o.config_path = config;
        o.n_layers = 2;
        o.dtype = DType::BF16;
        o.seed = seed;
        o.n_threads = threads;
        o.out_dir = dir.string();
        synthesize_hf_model(o);
    };
    run(a.path, 11, 1);
    run(b.path, 11, 2);
    run(c.path, 12, 2);
    auto bytes = [](const fs::path& p) {
        std::ifstream f(p / "model.safetensors", std::ios::binary);
        return std::vector<char>(std::istreambuf_iterator<char>(f), {});
    };
    EXPECT_EQ(bytes(a.path), bytes(b.path));  // thread count does not matter
    EXPECT_NE(bytes(a.path), bytes(c.path));
    EXPECT_EQ(HfConfig::load(a.path.string()).num_hidden_layers, 2);
    EXPECT_EQ(GenerationConfig::load(a.path.string()).eos_token_ids, (std::vector<int64_t>{2, 3}));
    const SafetensorsModel m(a.path.string());
    EXPECT_EQ(m.tensor_names().size(), 1u + 2 * 11 + 2);  // embed; 9 + q_norm + k_norm per layer; norm, lm_head
    EXPECT_EQ(m.tensor("model.layers.1.self_attn.q_norm.weight").shape, (std::vector<int64_t>{32}));
    EXPECT_EQ(m.tensor("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<int64_t>{128, 64}));
    EXPECT_EQ(m.tensor("model.layers.0.self_attn.o_proj.weight").shape, (std::vector<int64_t>{64, 128}));
    EXPECT_EQ(m.tensor("model.layers.0.self_attn.q_proj.weight").dtype, DType::BF16);
    EXPECT_EQ(m.tensor("lm_head.weight").shape, (std::vector<int64_t>{1000, 64}));
    const auto* kn = reinterpret_cast<const uint16_t*>(m.tensor("model.layers.0.self_attn.k_norm.weight").data);
    EXPECT_EQ(kn[0], 0x3f80);  // 1.0 in bf16
}

TEST(HfSynth, ShardsWithAnIndex) {
    TempDir tmp, cfg;
    SynthOptions o;
    o.config_path = small_config(cfg.path, "qwen2");
    o.dtype = DType::F16;
    o.max_shard_bytes = 100000;  // embeddings 128 KB, lm_head 128 KB, each layer ~50 KB: four shards
    o.out_dir = tmp.path.string();
    const SynthResult r = synthesize_hf_model(o);
    EXPECT_TRUE(fs::exists(tmp.path / "model.safetensors.index.json"));
    EXPECT_FALSE(fs::exists(tmp.path / "model.safetensors"));
    const SafetensorsModel m(tmp.path.string());
    EXPECT_TRUE(m.is_sharded());
    EXPECT_GE(m.n_shards(), 3u);
    const auto want = llama_layout(3, 64, 96, 128, 64, 1000, false, true);  // qwen2: q/k/v biases
    EXPECT_EQ(m.tensor_names().size(), want.size());
    uint64_t total = 0;
    for (const auto& [name, shape] : want) {
        EXPECT_EQ(m.tensor(name).shape, shape) << name;
        total += m.tensor(name).n_bytes;
    }
    EXPECT_EQ(total, r.weight_bytes);
    const uint64_t per_layer = 2 * 64 + 128 * 64 + 2 * 64 * 64 + 64 * 128 + 3 * 96 * 64 + 128 + 2 * 64;
    EXPECT_EQ(total, (2 * 1000 * 64 + 64 + 3 * per_layer) * 2);
    // Synth again into the same folder, unsharded: the old shards and index go.
    o.max_shard_bytes = 4ull << 30;
    synthesize_hf_model(o);
    EXPECT_FALSE(fs::exists(tmp.path / "model.safetensors.index.json"));
    EXPECT_EQ(SafetensorsModel(tmp.path.string()).n_shards(), 1u);
}

TEST(HfSynth, RejectsBadOptions) {
    TempDir tmp;
    SynthOptions o;
    o.out_dir = tmp.path.string();
    EXPECT_THROW(synthesize_hf_model(o), Error);  // neither shape nor config
    o.shape = "gpt-5";
    try {
        synthesize_hf_model(o);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("llama-3.1-8b"), std::string::npos) << e.what();
    }
    o.shape = "smollm2-135m";
    o.dtype = DType::Q4_0;
    EXPECT_THROW(synthesize_hf_model(o), Error);
    o.dtype = DType::F32;
    o.shape.clear();
    o.config_path = std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/configs/gemma-3-4b-it.config.json";
    EXPECT_THROW(synthesize_hf_model(o), Error);  // multimodal wrapper
    o.config_path = std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/configs/gemma-3-270m.config.json";
    o.n_layers = 19;  // more than layer_types lists
    EXPECT_THROW(synthesize_hf_model(o), Error);
}

TEST(HfWeights, Gemma3TextLayout) {
    // Gemma3ForCausalLM checkpoint names (transformers' Gemma3DecoderLayer): four norms per layer, q/k norms, tied.
    const HfConfig c = HfConfig::parse(R"({"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 48,
        "vocab_size": 500})");
    std::map<std::string, std::vector<int64_t>> got;
    for (const HfWeightSpec& w : hf_weight_specs(c)) got[w.name] = w.shape;
    const std::map<std::string, std::vector<int64_t>> want = {
        {"model.embed_tokens.weight", {500, 64}},
        {"model.layers.0.input_layernorm.weight", {64}},
        {"model.layers.0.self_attn.q_proj.weight", {96, 64}},
        {"model.layers.0.self_attn.k_proj.weight", {48, 64}},
        {"model.layers.0.self_attn.v_proj.weight", {48, 64}},
        {"model.layers.0.self_attn.o_proj.weight", {64, 96}},
        {"model.layers.0.self_attn.q_norm.weight", {48}},
        {"model.layers.0.self_attn.k_norm.weight", {48}},
        {"model.layers.0.post_attention_layernorm.weight", {64}},
        {"model.layers.0.pre_feedforward_layernorm.weight", {64}},
        {"model.layers.0.post_feedforward_layernorm.weight", {64}},
        {"model.layers.0.mlp.gate_proj.weight", {96, 64}},
        {"model.layers.0.mlp.up_proj.weight", {96, 64}},
        {"model.layers.0.mlp.down_proj.weight", {64, 96}},
        {"model.norm.weight", {64}},
    };
    EXPECT_EQ(got, want);
    // Gemma's RMSNorm scales by (1 + w): synth writes w = 0 so the effective scale is 1; other models get 1.
    EXPECT_EQ(synth_value(1, "model.norm.weight", HfWeightKind::Norm, true, 0), 0.0f);
    EXPECT_EQ(synth_value(1, "model.norm.weight", HfWeightKind::Norm, false, 0), 1.0f);
}

TEST(HfWeights, LlamaWithAttentionBiasHasOutputBias) {
    const HfConfig c = HfConfig::parse(R"({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "attention_bias": true})");
    std::map<std::string, std::vector<int64_t>> got;
    for (const HfWeightSpec& w : hf_weight_specs(c)) got[w.name] = w.shape;
    EXPECT_EQ(got.at("model.layers.0.self_attn.q_proj.bias"), (std::vector<int64_t>{8}));
    EXPECT_EQ(got.at("model.layers.0.self_attn.o_proj.bias"), (std::vector<int64_t>{8}));
    EXPECT_EQ(got.at("lm_head.weight"), (std::vector<int64_t>{10, 8}));
    EXPECT_EQ(got.size(), 1u + 9 + 4 + 2);
}
