// `osprey synth --format gguf` files through Osprey's model loader: the config read back from GGUF metadata equals
// the one the Hugging Face path reads from the shape's config.json, the f32 GGUF model computes the same logits as
// the f32 HF folder of the same seed (llama q/k permutation, llama3 rope factors, gemma 1 + w norms), quantized
// files stay close to it, and the converted tokenizer encodes like tokenizer.json.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "unit/temp_dir.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "engine/generator.h"
#include "engine/model_loader.h"
#include "formats/gguf.h"
#include "formats/gguf_synth.h"
#include "formats/hf_synth.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

using namespace osprey;
namespace fs = std::filesystem;

namespace {

using osprey::testing::TempDir;

const char* kTinyLlama3 = R"({"architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 512,
  "max_position_embeddings": 131072, "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0,
  "tie_word_embeddings": false, "vocab_size": 1024})";
const char* kTinyQwen2 = R"({"architectures": ["Qwen2ForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 512, "max_position_embeddings": 32768,
  "model_type": "qwen2", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": false,
  "tie_word_embeddings": true, "vocab_size": 1024})";
const char* kTinyQwen3 = R"({"architectures": ["Qwen3ForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "head_dim": 64, "hidden_act": "silu", "hidden_size": 256, "intermediate_size": 512, "max_position_embeddings": 40960,
  "model_type": "qwen3", "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000, "tie_word_embeddings": true, "vocab_size": 1024})";
const char* kTinyGemma3 = R"({"architectures": ["Gemma3ForCausalLM"], "bos_token_id": 2, "eos_token_id": 1,
  "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 256, "intermediate_size": 512,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
  "sliding_attention", "full_attention"], "max_position_embeddings": 32768, "model_type": "gemma3_text",
  "num_attention_heads": 4, "num_hidden_layers": 6, "num_key_value_heads": 1, "query_pre_attn_scalar": 256,
  "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0, "sliding_window": 8,
  "vocab_size": 1024})";

std::string write_config(const fs::path& dir, const char* json) {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << json;
    return (dir / "config.json").string();
}

std::string synth_gguf(const fs::path& out, const std::string& shape, const std::string& config,
                       formats::GgufFileType type, int64_t n_layers = 0, uint64_t seed = 5) {
    formats::GgufSynthOptions o;
    o.shape = shape;
    o.config_path = config;
    o.file_type = type;
    o.n_layers = n_layers;
    o.seed = seed;
    o.out_path = out.string();
    o.quantize = backend::cpu::quantize_row_ref;
    formats::synthesize_gguf_model(o);
    return o.out_path;
}

// Fields a forward pass uses. GGUF llama rotates adjacent pairs (q/k rows permuted), HF halves; sliding_window
// only matters where a layer slides.
void expect_same_config(const model::ModelConfig& g, const model::ModelConfig& h) {
    EXPECT_EQ(g.arch, h.arch);
    EXPECT_EQ(g.n_layers, h.n_layers);
    EXPECT_EQ(g.d_model, h.d_model);
    EXPECT_EQ(g.n_heads, h.n_heads);
    EXPECT_EQ(g.n_kv_heads, h.n_kv_heads);
    EXPECT_EQ(g.head_dim, h.head_dim);
    EXPECT_EQ(g.d_ff, h.d_ff);
    EXPECT_EQ(g.n_vocab, h.n_vocab);
    EXPECT_EQ(g.max_context, h.max_context);
    EXPECT_FLOAT_EQ(g.rms_eps, h.rms_eps);
    EXPECT_FLOAT_EQ(g.rope_theta, h.rope_theta);
    EXPECT_FLOAT_EQ(g.rope_theta_local, h.rope_theta_local);
    EXPECT_EQ(g.rope_neox, h.arch != model::Arch::Llama);
    EXPECT_EQ(g.rope_scaling, h.rope_scaling);
    if (h.rope_scaling != model::RopeScaling::None) {
        EXPECT_FLOAT_EQ(g.rope_factor, h.rope_factor);
        EXPECT_FLOAT_EQ(g.rope_low_freq_factor, h.rope_low_freq_factor);
        EXPECT_FLOAT_EQ(g.rope_high_freq_factor, h.rope_high_freq_factor);
        EXPECT_EQ(g.rope_original_max_context, h.rope_original_max_context);
    }
    EXPECT_EQ(g.tied_embeddings, h.tied_embeddings);
    EXPECT_EQ(g.qkv_bias, h.qkv_bias);
    EXPECT_EQ(g.qk_norm, h.qk_norm);
    EXPECT_EQ(g.sandwich_norms, h.sandwich_norms);
    EXPECT_EQ(g.activation, h.activation);
    EXPECT_FLOAT_EQ(g.embed_scale, h.embed_scale);
    EXPECT_FLOAT_EQ(g.attn_scale, h.attn_scale);
    EXPECT_EQ(g.layer_sliding, h.layer_sliding);
    bool any_sliding = false;
    for (bool s : h.layer_sliding) any_sliding |= s;
    if (any_sliding) EXPECT_EQ(g.sliding_window, h.sliding_window);
}

// All logits of teacher-forced `tokens`: [n, n_vocab] row-major.
std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& tokens) {
    auto be = backend::make_cpu_backend(0);
    engine::LoadOptions lo;
    lo.need_tokenizer = false;
    lo.prefetch = false;
    engine::LoadedModel m = engine::load_model(path, *be, lo);
    engine::Generator gen(*m.model, int(tokens.size()) + 16, 16, 256);
    const size_t v = size_t(m.config.n_vocab);
    std::vector<float> out(tokens.size() * v);
    gen.score(std::span<const int32_t>(tokens.data(), tokens.size()), [&](int first, const Tensor& logits) {
        for (int r = 0; r < logits.shape[0]; r++)
            be->copy_to_host(out.data() + size_t(first + r) * v, static_cast<const float*>(logits.data) + size_t(r) * v,
                             v * 4);
    });
    return out;
}

double max_abs(const std::vector<float>& x) {
    double m = 0;
    for (float f : x) m = std::max(m, double(std::fabs(f)));
    return m;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); i++) m = std::max(m, double(std::fabs(a[i] - b[i])));
    return m;
}

const std::vector<int32_t> kTokens = {1, 17, 400, 3, 999, 256, 42, 42, 7, 512, 600, 23};

}  // namespace

TEST(GgufSynthLoad, NamedShapeConfigEqualsTheHfConfig) {
    TempDir tmp;
    for (const char* shape : {"smollm2-135m", "llama-3.2-1b"}) {
        SCOPED_TRACE(shape);
        const formats::SynthModelSpec spec = formats::resolve_synth_model(shape, "", 1);
        fs::create_directories(tmp.path / shape);
        std::ofstream(tmp.path / shape / "config.json") << spec.config_json;
        const model::ModelConfig h = model::config_from_hf_folder((tmp.path / shape).string());
        const std::string path = synth_gguf(tmp.path / (std::string(shape) + ".gguf"), shape, "",
                                            formats::GgufFileType::Q8_0, 1);
        const formats::GgufFile f(path);
        const model::ModelConfig g = model::config_from_gguf(f);
        // Llama 3.2's rope factor (32) travels only inside rope_freqs.weight; it must come back from there.
        expect_same_config(g, h);
        auto be = backend::make_cpu_backend(1);
        engine::LoadOptions lo;
        lo.need_tokenizer = false;
        EXPECT_NO_THROW(engine::load_model(path, *be, lo));
    }
}

TEST(GgufSynthLoad, F32GgufComputesTheHfFolderLogits) {
    TempDir tmp;
    for (const auto& [name, json] : std::vector<std::pair<std::string, const char*>>{
             {"llama3", kTinyLlama3}, {"qwen2", kTinyQwen2}, {"qwen3", kTinyQwen3}, {"gemma3", kTinyGemma3}}) {
        SCOPED_TRACE(name);
        const std::string cfg = write_config(tmp.path / name, json);
        formats::SynthOptions h;
        h.config_path = cfg;
        h.dtype = DType::F32;
        h.seed = 5;
        h.out_dir = (tmp.path / name / "hf").string();
        formats::synthesize_hf_model(h);
        const std::string gguf = synth_gguf(tmp.path / name / "m.gguf", "", cfg, formats::GgufFileType::F32);
        expect_same_config(model::config_from_gguf(formats::GgufFile(gguf)), model::config_from_hf_folder(h.out_dir));
        const std::vector<float> ref = all_logits(h.out_dir, kTokens);
        const std::vector<float> got = all_logits(gguf, kTokens);
        ASSERT_EQ(ref.size(), got.size());
        EXPECT_GT(max_abs(ref), 1e-3);
        EXPECT_LE(max_diff(ref, got), 1e-4 + 1e-3 * max_abs(ref));

        // Quantized files: the same function up to quantization noise.
        for (auto type : {formats::GgufFileType::Q8_0, formats::GgufFileType::Q4_K_M, formats::GgufFileType::BF16}) {
            SCOPED_TRACE(std::string(formats::gguf_file_type_name(type)));
            const std::string q = synth_gguf(tmp.path / name / "q.gguf", "", cfg, type);
            const std::vector<float> ql = all_logits(q, kTokens);
            double num = 0, den = 0;
            for (size_t i = 0; i < ref.size(); i++) {
                num += double(ql[i] - ref[i]) * double(ql[i] - ref[i]);
                den += double(ref[i]) * double(ref[i]);
            }
            const double rel = std::sqrt(num / den);
            std::printf("%s %s: relative logit error %.4f\n", name.c_str(), std::string(formats::gguf_file_type_name(type)).c_str(), rel);
            // Measured: bf16 ~0.005, q8_0 ~0.015 (gemma 0.026), q4_k_m ~0.17 (gemma's 6 layers 0.30); a wrong
            // layout (rows permuted, types mixed up) gives ~1.4.
            EXPECT_LT(rel, type == formats::GgufFileType::Q4_K_M ? 0.4 : type == formats::GgufFileType::Q8_0 ? 0.05 : 0.02);
        }
    }
}

TEST(GgufSynthLoad, ConvertedTokenizerEncodesLikeTokenizerJson) {
    const fs::path shared = fs::path(OSPREY_SHARED_DIR) / "data";
    for (const auto& [tok, vocab] : std::vector<std::pair<std::string, int>>{{"llama3", 128256}, {"qwen3", 151936}}) {
        SCOPED_TRACE(tok);
        const fs::path dir = shared / "tokenizers" / tok;
        if (!fs::exists(dir / "tokenizer.json")) GTEST_SKIP() << "no shared tokenizer at " << dir;
        TempDir tmp;
        std::string cfg = kTinyQwen2;
        cfg.replace(cfg.find("\"vocab_size\": 1024"), 18, "\"vocab_size\": " + std::to_string(vocab));
        formats::GgufSynthOptions o;
        o.config_path = write_config(tmp.path, cfg.c_str());
        o.file_type = formats::GgufFileType::F16;
        o.tokenizer_dir = dir.string();
        o.n_layers = 1;
        o.out_path = (tmp.path / "m.gguf").string();
        formats::synthesize_gguf_model(o);
        const formats::GgufFile f(o.out_path);
        const tokenizer::Tokenizer a = tokenizer::Tokenizer::from_gguf(f);
        const tokenizer::Tokenizer b = tokenizer::Tokenizer::from_path(dir.string());
        std::ifstream in(shared / "eval/wikitext-2-raw-test.txt", std::ios::binary);
        std::string text(200000, '\0');
        in.read(text.data(), std::streamsize(text.size()));
        text.resize(size_t(in.gcount()));
        text += " <|im_start|>user\nhi<|im_end|> <|begin_of_text|><|eot_id|> <think> 1234567 don't \t\n\n";
        for (bool special : {false, true}) {
            EXPECT_EQ(a.encode(text, true, special), b.encode(text, true, special));
        }
        EXPECT_EQ(a.bos_id(), b.bos_id());
        EXPECT_EQ(a.eos_id(), b.eos_id());
        EXPECT_EQ(a.add_bos(), b.add_bos());
        EXPECT_EQ(a.chat_template(), b.chat_template());
        const std::vector<int32_t> ids = b.encode(text.substr(0, 5000), false, false);
        EXPECT_EQ(a.decode(ids), b.decode(ids));
    }
}
