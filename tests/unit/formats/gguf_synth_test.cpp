// synthesize_gguf_model: the tensor types of the q4_k_m mix (expected lists written out from llama.cpp's rule), the
// architecture metadata (literal values of the named shapes), llama3 rope factors (recomputed here with
// transformers' formula), the tokenizer metadata (counted from tokenizer.json here), and the tensor values against
// the Hugging Face writer's safetensors with llama.cpp's q/k row permutation re-implemented in the test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "unit/temp_dir.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_synth.h"
#include "formats/hf_synth.h"
#include "formats/safetensors_model.h"

using namespace osprey;
using namespace osprey::formats;
namespace fs = std::filesystem;

namespace {

using osprey::testing::TempDir;

// A tiny llama with Llama 3.1's rope scaling; q 4 heads of 64, kv 2 heads.
const char* kTinyLlama3 = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 512,
  "max_position_embeddings": 131072, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
  "tie_word_embeddings": false, "vocab_size": 128256})";

std::string write_config(const fs::path& dir, const char* json) {
    std::ofstream(dir / "config.json") << json;
    return (dir / "config.json").string();
}

std::map<std::string, DType> types_of(const std::vector<GgufSynthTensor>& ts) {
    std::map<std::string, DType> m;
    for (const auto& t : ts) m[t.name] = t.dtype;
    return m;
}

}  // namespace

TEST(GgufSynth, Q4KMMixForLlama31_8B) {
    const SynthModelSpec spec = resolve_synth_model("llama-3.1-8b", "", 0);
    const auto m = types_of(gguf_synth_tensors(spec.config, GgufFileType::Q4_K_M));
    // llama.cpp: use_more_bits(i, 32) = i < 4 || i >= 28 || (i - 4) % 3 == 2.
    const std::set<int> more = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    EXPECT_EQ(m.at("token_embd.weight"), DType::Q4_K);
    EXPECT_EQ(m.at("output.weight"), DType::Q6_K);
    EXPECT_EQ(m.at("output_norm.weight"), DType::F32);
    EXPECT_EQ(m.at("rope_freqs.weight"), DType::F32);
    for (int l = 0; l < 32; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        const DType big = more.count(l) ? DType::Q6_K : DType::Q4_K;
        EXPECT_EQ(m.at(p + "attn_v.weight"), big) << l;
        EXPECT_EQ(m.at(p + "ffn_down.weight"), big) << l;
        for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_output.weight", "ffn_gate.weight", "ffn_up.weight"})
            EXPECT_EQ(m.at(p + n), DType::Q4_K) << p << n;
        EXPECT_EQ(m.at(p + "attn_norm.weight"), DType::F32);
        EXPECT_EQ(m.at(p + "ffn_norm.weight"), DType::F32);
    }
    EXPECT_EQ(m.size(), size_t(32 * 9 + 4));
}

TEST(GgufSynth, Q4KMFallbacksForRowsNotMultipleOf256) {
    // SmolLM2: rows of 576 (not whole 256-blocks) take Q5_0 for Q4_K and Q8_0 for Q6_K; tied embeddings are the
    // output (Q6_K -> Q8_0); ffn_down rows are 1536 (whole blocks). As the real gemma-3-270m q4_k_m file shows.
    const SynthModelSpec spec = resolve_synth_model("smollm2-135m", "", 0);
    const auto m = types_of(gguf_synth_tensors(spec.config, GgufFileType::Q4_K_M));
    EXPECT_EQ(m.count("output.weight"), 0u);
    EXPECT_EQ(m.at("token_embd.weight"), DType::Q8_0);
    // use_more_bits(i, 30): i < 3 || i >= 26 || (i - 3) % 3 == 2
    const std::set<int> more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
    for (int l = 0; l < 30; l++) {
        const std::string p = "blk." + std::to_string(l) + ".";
        EXPECT_EQ(m.at(p + "attn_v.weight"), more.count(l) ? DType::Q8_0 : DType::Q5_0) << l;
        EXPECT_EQ(m.at(p + "ffn_down.weight"), more.count(l) ? DType::Q6_K : DType::Q4_K) << l;
        EXPECT_EQ(m.at(p + "attn_q.weight"), DType::Q5_0);
        EXPECT_EQ(m.at(p + "ffn_up.weight"), DType::Q5_0);
    }
    const auto q8 = types_of(gguf_synth_tensors(spec.config, GgufFileType::Q8_0));
    EXPECT_EQ(q8.at("token_embd.weight"), DType::Q8_0);
    EXPECT_EQ(q8.at("blk.3.ffn_down.weight"), DType::Q8_0);
    EXPECT_EQ(q8.at("blk.3.ffn_norm.weight"), DType::F32);
    EXPECT_EQ(types_of(gguf_synth_tensors(spec.config, GgufFileType::BF16)).at("blk.0.attn_k.weight"), DType::BF16);
}

TEST(GgufSynth, FileTypeNames) {
    EXPECT_EQ(gguf_file_type_from_name("Q4_K_M"), GgufFileType::Q4_K_M);
    EXPECT_EQ(gguf_file_type_from_name("bf16"), GgufFileType::BF16);
    EXPECT_FALSE(gguf_file_type_from_name("q3_k_s").has_value());
    EXPECT_EQ(gguf_llama_ftype(GgufFileType::Q4_K_M), 15u);
    EXPECT_EQ(gguf_llama_ftype(GgufFileType::Q8_0), 7u);
}

TEST(GgufSynth, SmolLM2MetadataAndTensorLayout) {
    TempDir tmp;
    GgufSynthOptions o;
    o.shape = "smollm2-135m";
    o.n_layers = 2;
    o.file_type = GgufFileType::F16;
    o.out_path = (tmp.path / "m.gguf").string();
    const GgufSynthResult r = synthesize_gguf_model(o);
    const GgufFile f(o.out_path);
    EXPECT_EQ(r.file_bytes, fs::file_size(o.out_path));
    EXPECT_EQ(*f.get_string("general.architecture"), "llama");
    EXPECT_EQ(*f.get_int("llama.block_count"), 2);
    EXPECT_EQ(*f.get_int("llama.context_length"), 8192);
    EXPECT_EQ(*f.get_int("llama.embedding_length"), 576);
    EXPECT_EQ(*f.get_int("llama.feed_forward_length"), 1536);
    EXPECT_EQ(*f.get_int("llama.attention.head_count"), 9);
    EXPECT_EQ(*f.get_int("llama.attention.head_count_kv"), 3);
    EXPECT_EQ(*f.get_int("llama.rope.dimension_count"), 64);
    EXPECT_EQ(*f.get_int("llama.vocab_size"), 49152);
    EXPECT_FLOAT_EQ(float(*f.get_float("llama.rope.freq_base")), 100000.0f);
    EXPECT_FLOAT_EQ(float(*f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
    EXPECT_EQ(*f.get_int("general.file_type"), 1);
    EXPECT_EQ(f.find("llama.rope.scaling.type"), nullptr);
    EXPECT_EQ(f.find_tensor("rope_freqs.weight"), nullptr);
    EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied
    ASSERT_EQ(f.tensors().size(), 2u * 9 + 2);
    const std::map<std::string, std::vector<int64_t>> shapes = {
        {"token_embd.weight", {49152, 576}},    {"output_norm.weight", {576}},
        {"blk.1.attn_norm.weight", {576}},      {"blk.1.ffn_norm.weight", {576}},
        {"blk.1.attn_q.weight", {576, 576}},    {"blk.1.attn_k.weight", {192, 576}},
        {"blk.1.attn_v.weight", {192, 576}},    {"blk.1.attn_output.weight", {576, 576}},
        {"blk.1.ffn_gate.weight", {1536, 576}}, {"blk.1.ffn_up.weight", {1536, 576}},
        {"blk.1.ffn_down.weight", {576, 1536}},
    };
    for (const auto& [name, shape] : shapes) {
        const GgufTensorInfo* t = f.find_tensor(name);
        ASSERT_NE(t, nullptr) << name;
        EXPECT_EQ(t->shape, shape) << name;
        EXPECT_EQ(t->dtype, shape.size() == 1 ? DType::F32 : DType::F16) << name;
    }
    EXPECT_THROW(
        {
            GgufSynthOptions q = o;
            q.file_type = GgufFileType::Q8_0;  // no quantizer given
            synthesize_gguf_model(q);
        },
        Error);
}

TEST(GgufSynth, Llama3RopeFactorsAndKeys) {
    TempDir tmp;
    GgufSynthOptions o;
    o.config_path = write_config(tmp.path, kTinyLlama3);
    o.file_type = GgufFileType::F32;
    o.out_path = (tmp.path / "m.gguf").string();
    synthesize_gguf_model(o);
    const GgufFile f(o.out_path);
    EXPECT_EQ(f.find("llama.rope.scaling.factor"), nullptr);  // llama.cpp would apply it as a linear scale
    EXPECT_EQ(*f.get_int("llama.rope.scaling.original_context_length"), 8192);
    EXPECT_FLOAT_EQ(float(*f.get_float("llama.rope.freq_base")), 500000.0f);
    const GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight");
    ASSERT_NE(rf, nullptr);
    ASSERT_EQ(rf->shape, (std::vector<int64_t>{32}));
    ASSERT_EQ(rf->dtype, DType::F32);
    // transformers' _compute_llama3_parameters: the scaled inverse frequency; the stored factor is freq / scaled.
    for (int i = 0; i < 32; i++) {
        const double freq = 1.0 / std::pow(500000.0, 2.0 * i / 64.0);
        const double wavelen = 2 * M_PI / freq, low = 8192.0 / 1.0, high = 8192.0 / 4.0;
        double scaled = freq;
        if (wavelen > low) scaled = freq / 8.0;
        else if (wavelen >= high) {
            const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
            scaled = (1 - smooth) * freq / 8.0 + smooth * freq;
        }
        float got;
        std::memcpy(&got, rf->data + 4 * i, 4);
        EXPECT_NEAR(got, freq / scaled, 1e-4 * freq / scaled) << i;
    }
}

TEST(GgufSynth, ValuesAreTheHfWritersWithLlamaPermutation) {
    TempDir tmp;
    const std::string cfg = write_config(tmp.path, kTinyLlama3);
    SynthOptions h;
    h.config_path = cfg;
    h.dtype = DType::F32;
    h.seed = 11;
    h.out_dir = (tmp.path / "hf").string();
    synthesize_hf_model(h);
    GgufSynthOptions o;
    o.config_path = cfg;
    o.file_type = GgufFileType::F32;
    o.seed = 11;
    o.out_path = (tmp.path / "m.gguf").string();
    synthesize_gguf_model(o);
    const SafetensorsModel hf(h.out_dir);
    const GgufFile g(o.out_path);
    auto hf_f32 = [&](const std::string& n) { return reinterpret_cast<const float*>(hf.tensor(n).data); };
    auto gg_f32 = [&](const std::string& n) {
        const GgufTensorInfo* t = g.find_tensor(n);
        if (!t) throw std::runtime_error("missing " + n);
        return reinterpret_cast<const float*>(t->data);
    };
    // Unpermuted tensors: identical.
    const std::map<std::string, std::string> same = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.1.self_attn.v_proj.weight", "blk.1.attn_v.weight"},
        {"model.layers.1.self_attn.o_proj.weight", "blk.1.attn_output.weight"},
        {"model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"},
        {"model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight"},
    };
    for (const auto& [hn, gn] : same) {
        const auto& info = hf.tensor(hn);
        size_t n = 1;
        for (int64_t d : info.shape) n *= size_t(d);
        EXPECT_EQ(0, std::memcmp(hf_f32(hn), gg_f32(gn), n * 4)) << gn;
    }
    // q/k: numpy's w.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(w.shape), as llama.cpp's converter.
    for (const auto& [hn, gn, n_head] : std::vector<std::tuple<std::string, std::string, int>>{
             {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", 4},
             {"model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2}}) {
        const auto& info = hf.tensor(hn);
        const int rows = int(info.shape[0]), cols = int(info.shape[1]), half = rows / n_head / 2;
        const float* a = hf_f32(hn);
        const float* b = gg_f32(gn);
        int bad = 0;
        for (int h = 0; h < n_head; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++) {
                    const int dst = (h * half + i) * 2 + j;   // [h][i][j] after the swap
                    const int src = (h * 2 + j) * half + i;   // [h][j][i] before
                    bad += std::memcmp(b + size_t(dst) * cols, a + size_t(src) * cols, size_t(cols) * 4) != 0;
                }
        EXPECT_EQ(bad, 0) << gn;
    }
}

TEST(GgufSynth, Llama3TokenizerMetadata) {
    const fs::path dir = fs::path(OSPREY_SHARED_DIR) / "data/tokenizers/llama3";
    if (!fs::exists(dir / "tokenizer.json")) GTEST_SKIP() << "no shared llama3 tokenizer at " << dir;
    TempDir tmp;
    GgufSynthOptions o;
    o.config_path = write_config(tmp.path, kTinyLlama3);
    std::ofstream(tmp.path / "generation_config.json") << R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})";
    o.file_type = GgufFileType::F16;
    o.tokenizer_dir = dir.string();
    o.out_path = (tmp.path / "m.gguf").string();
    synthesize_gguf_model(o);
    const GgufFile f(o.out_path);
    std::ifstream in(dir / "tokenizer.json");
    const nlohmann::json tj = nlohmann::json::parse(in);
    EXPECT_EQ(*f.get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(*f.get_string("tokenizer.ggml.pre"), "llama-bpe");
    const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
    const auto types = f.get_int_array("tokenizer.ggml.token_type");
    ASSERT_EQ(tokens.size(), 128256u);
    ASSERT_EQ(types.size(), 128256u);
    for (auto it = tj["model"]["vocab"].begin(); it != tj["model"]["vocab"].end(); ++it) {
        const int id = it.value().get<int>();
        if (tokens[size_t(id)] != it.key() || types[size_t(id)] != 1) {
            ADD_FAILURE() << "token " << id;
            break;
        }
    }
    for (const auto& a : tj["added_tokens"]) {
        EXPECT_EQ(tokens[a["id"].get<size_t>()], a["content"].get<std::string>());
        EXPECT_EQ(types[a["id"].get<size_t>()], 3);  // control
    }
    const auto merges = f.get_string_array("tokenizer.ggml.merges");
    ASSERT_EQ(merges.size(), tj["model"]["merges"].size());
    EXPECT_EQ(merges[0], tj["model"]["merges"][0].get<std::string>());
    EXPECT_EQ(merges.back(), tj["model"]["merges"].back().get<std::string>());
    EXPECT_EQ(*f.get_int("tokenizer.ggml.bos_token_id"), 128000);
    EXPECT_EQ(*f.get_int("tokenizer.ggml.eos_token_id"), 128001);
    EXPECT_EQ(*f.get_int("tokenizer.ggml.eot_token_id"), 128009);
    EXPECT_EQ(*f.get_int("tokenizer.ggml.eom_token_id"), 128008);  // a reserved token in this Llama 3.0 vocabulary
    EXPECT_EQ(*f.get_bool("tokenizer.ggml.add_bos_token"), false);  // this tokenizer.json's post-processor adds none
    std::ifstream cin(dir / "tokenizer_config.json");
    EXPECT_EQ(*f.get_string("tokenizer.chat_template"), nlohmann::json::parse(cin)["chat_template"].get<std::string>());
}
