// HfConfig / GenerationConfig on the public configs of real models (tests/golden/data/configs, values as published)
// and on broken ones.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "formats/hf_config.h"

using namespace osprey;
using namespace osprey::formats;

namespace {

const std::string kDir = std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/configs/";

void expect_error(const std::string& text, ErrorCode code, const std::string& needle) {
    try {
        HfConfig::parse(text);
        ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
    }
}

const char* kMinimal = R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)";

std::string minimal(const std::string& extra = "") { return std::string(kMinimal) + extra + "}"; }

}  // namespace

TEST(HfConfig, Llama31_8B) {
    const HfConfig c = HfConfig::load(kDir + "llama-3.1-8b-instruct.config.json");
    EXPECT_EQ(c.model_type, "llama");
    EXPECT_EQ(c.architectures, (std::vector<std::string>{"LlamaForCausalLM"}));
    EXPECT_EQ(c.hidden_size, 4096);
    EXPECT_EQ(c.intermediate_size, 14336);
    EXPECT_EQ(c.num_hidden_layers, 32);
    EXPECT_EQ(c.num_attention_heads, 32);
    EXPECT_EQ(c.num_key_value_heads, 8);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.vocab_size, 128256);
    EXPECT_EQ(c.max_position_embeddings, 131072);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
    EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
    EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Llama3);
    EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
    EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
    EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_FALSE(c.attention_bias);
    EXPECT_FALSE(c.qk_norm);
    EXPECT_EQ(c.layer_types.size(), 32u);
    EXPECT_FALSE(c.is_sliding(31));
    EXPECT_EQ(c.hidden_act, "silu");
    EXPECT_EQ(c.bos_token_id, 128000);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
    EXPECT_EQ(c.torch_dtype, "bfloat16");

    const GenerationConfig g = GenerationConfig::load(kDir + "llama-3.1-8b-instruct.generation_config.json");
    EXPECT_DOUBLE_EQ(*g.temperature, 0.6);
    EXPECT_DOUBLE_EQ(*g.top_p, 0.9);
    EXPECT_FALSE(g.top_k.has_value());
    EXPECT_TRUE(*g.do_sample);
    EXPECT_EQ(g.bos_token_id, 128000);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(HfConfig, Qwen25_7B_HasImplicitQkvBias) {
    const HfConfig c = HfConfig::load(kDir + "qwen2.5-7b-instruct.config.json");
    EXPECT_EQ(c.model_type, "qwen2");
    EXPECT_EQ(c.hidden_size, 3584);
    EXPECT_EQ(c.num_hidden_layers, 28);
    EXPECT_EQ(c.num_attention_heads, 28);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.intermediate_size, 18944);
    EXPECT_EQ(c.vocab_size, 152064);
    EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
    EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
    EXPECT_TRUE(c.attention_bias);  // no "attention_bias" key: implied by qwen2
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_EQ(c.rope_scaling.type, RopeScalingType::None);
    EXPECT_EQ(c.sliding_window, 131072);
    EXPECT_FALSE(c.use_sliding_window);
    for (int64_t i = 0; i < 28; i++) EXPECT_FALSE(c.is_sliding(i));  // use_sliding_window is false
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));

    const GenerationConfig g = GenerationConfig::load(kDir + "qwen2.5-7b-instruct.generation_config.json");
    EXPECT_DOUBLE_EQ(*g.repetition_penalty, 1.05);
    EXPECT_DOUBLE_EQ(*g.temperature, 0.7);
    EXPECT_DOUBLE_EQ(*g.top_p, 0.8);
    EXPECT_EQ(*g.top_k, 20);
    EXPECT_EQ(g.pad_token_id, 151643);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{151645, 151643}));
}

TEST(HfConfig, Qwen3_HeadDimIsExplicit) {
    const HfConfig c = HfConfig::load(kDir + "qwen3-0.6b.config.json");
    EXPECT_EQ(c.model_type, "qwen3");
    EXPECT_EQ(c.hidden_size, 1024);
    EXPECT_EQ(c.num_attention_heads, 16);
    EXPECT_EQ(c.head_dim, 128);  // not 1024 / 16
    EXPECT_EQ(c.num_key_value_heads, 8);
    EXPECT_EQ(c.vocab_size, 151936);
    EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // written as an integer
    EXPECT_FALSE(c.attention_bias);
    EXPECT_TRUE(c.qk_norm);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_FALSE(c.sliding_window.has_value());  // null
    const GenerationConfig g = GenerationConfig::load(kDir + "qwen3-0.6b.generation_config.json");
    EXPECT_DOUBLE_EQ(*g.top_p, 0.95);
    EXPECT_EQ(*g.top_k, 20);
}

TEST(HfConfig, Mistral7B_SlidingEverywhere) {
    const HfConfig c = HfConfig::load(kDir + "mistral-7b-v0.1.config.json");
    EXPECT_EQ(c.model_type, "mistral");
    EXPECT_EQ(c.vocab_size, 32000);
    EXPECT_EQ(c.head_dim, 128);
    EXPECT_EQ(c.sliding_window, 4096);
    for (int64_t i = 0; i < 32; i++) EXPECT_TRUE(c.is_sliding(i));
    EXPECT_EQ(c.bos_token_id, 1);
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2}));
}

TEST(HfConfig, Gemma3_270m) {
    const HfConfig c = HfConfig::load(kDir + "gemma-3-270m.config.json");
    EXPECT_EQ(c.model_type, "gemma3_text");
    EXPECT_EQ(c.hidden_size, 640);
    EXPECT_EQ(c.num_hidden_layers, 18);
    EXPECT_EQ(c.num_attention_heads, 4);
    EXPECT_EQ(c.num_key_value_heads, 1);
    EXPECT_EQ(c.head_dim, 256);
    EXPECT_EQ(c.intermediate_size, 2048);
    EXPECT_EQ(c.vocab_size, 262144);
    EXPECT_EQ(c.sliding_window, 512);
    EXPECT_DOUBLE_EQ(*c.rope_local_base_freq, 10000.0);
    EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
    EXPECT_DOUBLE_EQ(*c.query_pre_attn_scalar, 256);
    EXPECT_FALSE(c.final_logit_softcapping.has_value());
    EXPECT_EQ(c.hidden_act, "gelu_pytorch_tanh");
    EXPECT_TRUE(c.tie_word_embeddings);  // gemma default
    EXPECT_TRUE(c.qk_norm);
    for (int64_t i = 0; i < 18; i++) EXPECT_EQ(c.is_sliding(i), (i + 1) % 6 != 0) << i;
    EXPECT_EQ(c.pad_token_id, 0);
    const GenerationConfig g = GenerationConfig::load(kDir + "gemma-3-270m.generation_config.json");
    EXPECT_EQ(*g.top_k, 64);
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{1, 106}));
}

TEST(HfConfig, Gemma3_MultimodalWrapperReadsTextConfig) {
    const HfConfig c = HfConfig::load(kDir + "gemma-3-4b-it.config.json");
    EXPECT_EQ(c.file_model_type, "gemma3");
    EXPECT_EQ(c.model_type, "gemma3_text");
    EXPECT_EQ(c.hidden_size, 2560);
    EXPECT_EQ(c.intermediate_size, 10240);
    EXPECT_EQ(c.num_hidden_layers, 34);
    EXPECT_EQ(c.sliding_window, 1024);
    EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Linear);
    EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
    // Omitted in text_config: Gemma3TextConfig defaults.
    EXPECT_EQ(c.num_attention_heads, 8);
    EXPECT_EQ(c.num_key_value_heads, 4);
    EXPECT_EQ(c.head_dim, 256);
    EXPECT_EQ(c.vocab_size, 262208);
    EXPECT_DOUBLE_EQ(*c.query_pre_attn_scalar, 256);
    EXPECT_TRUE(c.is_sliding(0));
    EXPECT_FALSE(c.is_sliding(5));
    EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{1, 106}));  // from the top level
}

TEST(HfConfig, SmolLM2) {
    const HfConfig c = HfConfig::load(kDir + "smollm2-135m-instruct.config.json");
    EXPECT_EQ(c.hidden_size, 576);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.num_key_value_heads, 3);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_DOUBLE_EQ(c.rope_theta, 100000.0);
    EXPECT_EQ(c.pad_token_id, 2);
}

TEST(HfConfig, Defaults) {
    const HfConfig c = HfConfig::parse(minimal());
    EXPECT_EQ(c.num_key_value_heads, 4);  // = heads
    EXPECT_EQ(c.head_dim, 16);            // = hidden / heads
    EXPECT_FALSE(c.attention_bias);
    EXPECT_TRUE(c.eos_token_ids.empty());
    EXPECT_EQ(c.layer_types.size(), 2u);
    EXPECT_EQ(HfConfig::parse(minimal(R"(, "rope_scaling": {"type": "linear", "factor": 2})")).rope_scaling.type,
              RopeScalingType::Linear);
    EXPECT_EQ(HfConfig::parse(minimal(R"(, "rope_scaling": {"rope_type": "default"})")).rope_scaling.type,
              RopeScalingType::None);
    EXPECT_TRUE(HfConfig::parse(minimal(R"(, "attention_bias": true)")).attention_bias);
    const auto lt = HfConfig::parse(minimal(R"(, "sliding_window": 8, "layer_types": ["sliding_attention",
        "full_attention"])"));
    EXPECT_TRUE(lt.is_sliding(0));
    EXPECT_FALSE(lt.is_sliding(1));
}

TEST(HfConfig, RejectsBrokenConfigs) {
    expect_error(R"({"model_type": "llama", "hidden_size": )", ErrorCode::InvalidFile, "malformed JSON");
    expect_error("[1, 2]", ErrorCode::InvalidFile, "must be a JSON object");
    expect_error("{}", ErrorCode::InvalidFile, "missing 'model_type'");
    expect_error(R"({"model_type": "phi3"})", ErrorCode::Unsupported, "model_type 'phi3' is not supported");
    expect_error(R"({"model_type": 3})", ErrorCode::InvalidFile, "'model_type' must be a string, got integer");
    expect_error(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": "2",
        "num_attention_heads": 4, "vocab_size": 100})",
                 ErrorCode::InvalidFile, "config.json: 'num_hidden_layers' must be an integer, got string");
    expect_error(R"({"model_type": "llama", "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 100})", ErrorCode::InvalidFile, "missing 'hidden_size'");
    expect_error(minimal(R"(, "num_key_value_heads": 3)"), ErrorCode::InvalidFile, "not a multiple");
    expect_error(minimal(R"(, "num_key_value_heads": 0)"), ErrorCode::InvalidFile, "out of range");
    expect_error(minimal(R"(, "num_key_value_heads": 8)"), ErrorCode::InvalidFile, "out of range");
    expect_error(minimal(R"(, "rms_norm_eps": -1)"), ErrorCode::InvalidFile, "positive");
    expect_error(minimal(R"(, "rope_theta": "big")"), ErrorCode::InvalidFile, "'rope_theta' must be a number, got string");
    expect_error(minimal(R"(, "tie_word_embeddings": 1)"), ErrorCode::InvalidFile, "must be a boolean, got integer");
    expect_error(minimal(R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4})"), ErrorCode::Unsupported,
                 "rope_scaling type 'yarn'");
    expect_error(minimal(R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8})"), ErrorCode::InvalidFile,
                 "low_freq_factor");
    expect_error(minimal(R"(, "rope_scaling": [1])"), ErrorCode::InvalidFile, "must be an object or null");
    expect_error(minimal(R"(, "eos_token_id": [1, "2"])"), ErrorCode::InvalidFile, "'eos_token_id[1]' must be an integer");
    expect_error(minimal(R"(, "eos_token_id": "2")"), ErrorCode::InvalidFile, "an integer or a list");
    expect_error(minimal(R"(, "layer_types": ["full_attention"])"), ErrorCode::InvalidFile, "has 1 entries");
    expect_error(minimal(R"(, "layer_types": ["full_attention", "local"])"), ErrorCode::InvalidFile, "'local'");
    expect_error(minimal(R"(, "vocab_size": 18446744073709551615)"), ErrorCode::InvalidFile, "out of range");
    expect_error(R"({"model_type": "gemma3", "text_config": 5})", ErrorCode::InvalidFile, "'text_config' must be an object");
    expect_error(R"({"model_type": "gemma3", "text_config": {"hidden_size": "x"}})", ErrorCode::InvalidFile,
                 "'text_config.hidden_size' must be an integer, got string");
    expect_error(std::string(100000, '['), ErrorCode::InvalidFile, "nested deeper");
    try {
        HfConfig::load(kDir + "no-such.config.json");
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
    }
}

TEST(GenerationConfig, RejectsBrokenFiles) {
    auto expect = [](const std::string& text, const std::string& needle) {
        try {
            GenerationConfig::parse(text);
            ADD_FAILURE() << "accepted: " << text;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
        }
    };
    expect(R"({"temperature": "hot"})", "generation_config.json: 'temperature' must be a number, got string");
    expect(R"({"top_k": 2.5})", "'top_k' must be an integer");
    expect(R"({"top_p": 1.5})", "in (0, 1]");
    expect(R"({"do_sample": "yes"})", "must be a boolean");
    expect(R"({"eos_token_id": [1, null]})", "must be an integer, got null");
    expect(R"({"temperature": 0.7,})", "malformed JSON");
    const GenerationConfig g = GenerationConfig::parse(R"({"temperature": null, "eos_token_id": 7, "min_p": 0.05})");
    EXPECT_FALSE(g.temperature.has_value());
    EXPECT_EQ(g.eos_token_ids, (std::vector<int64_t>{7}));
    EXPECT_DOUBLE_EQ(*g.min_p, 0.05);
    EXPECT_FALSE(GenerationConfig::load(kDir).temperature.has_value());  // folder without the file: all unset
}
