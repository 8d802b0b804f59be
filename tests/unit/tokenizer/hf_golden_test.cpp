// SmolLM2 and Gemma 3 tokenizers (from their GGUF files) against Hugging Face ids written by
// tests/golden/make_tokenizer_goldens.py; also decode round trips and the incremental decoder.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

using namespace osprey;
using namespace osprey::tokenizer;

namespace {

std::string model_cache() {
    if (const char* env = std::getenv("OSPREY_MODEL_CACHE"); env != nullptr && *env != '\0') return env;
    const char* home = std::getenv("HOME");
    return std::string(home != nullptr ? home : "/root") + "/.cache/osprey/models";
}

nlohmann::json goldens() {
    std::ifstream in(std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/tokenizer/hf_goldens.json");
    EXPECT_TRUE(in.good()) << "tests/golden/data/tokenizer/hf_goldens.json is missing";
    return nlohmann::json::parse(in);
}

void check_model(const std::string& name) {
    const nlohmann::json g = goldens();
    const auto& m = g["models"][name];
    const std::string path = model_cache() + "/" + m["gguf"].get<std::string>();
    if (!std::filesystem::exists(path))
        GTEST_SKIP() << path << " not fetched (run scripts/fetch_models.sh)";
    formats::GgufFile gguf(path);
    const Tokenizer tk = Tokenizer::from_gguf(gguf);
    const auto& texts = g["texts"];
    ASSERT_EQ(texts.size(), m["ids"].size());
    int failures = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
        const std::string text = texts[i].get<std::string>();
        const auto expected = m["ids"][i].get<std::vector<int32_t>>();
        // Hugging Face always splits out special tokens: compare with parse_special on.
        const auto ids = tk.encode(text, /*add_special=*/false, /*parse_special=*/true);
        EXPECT_EQ(ids, expected) << name << " text " << i << ": " << text;
        if (ids != expected) ++failures;

        // Lossless: decode gives the text back (both tokenizers keep every byte).
        EXPECT_EQ(tk.decode(expected), text) << name << " text " << i;

        // Incremental decoding: valid UTF-8 chunks that concatenate to the text.
        IncrementalDecoder dec(tk);
        std::string joined;
        for (int32_t id : expected) {
            const std::string chunk = dec.push(id);
            EXPECT_TRUE(is_valid_utf8(chunk)) << name << " text " << i << " id " << id;
            joined += chunk;
        }
        joined += dec.flush();
        EXPECT_EQ(joined, text) << name << " text " << i;
    }
    EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << texts.size() << " texts differ";
    EXPECT_EQ(tk.encode("Hello world", /*add_special=*/true, true),
              m["hello_world_with_special"].get<std::vector<int32_t>>()) << name << ": BOS/EOS rule";
}

}  // namespace

TEST(HfGolden, SmolLM2) { check_model("smollm2"); }
TEST(HfGolden, Gemma3) { check_model("gemma3"); }

TEST(HfGolden, SmolLM2ChatTemplateAndEos) {
    const std::string path = model_cache() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not fetched";
    formats::GgufFile gguf(path);
    const Tokenizer tk = Tokenizer::from_gguf(gguf);
    EXPECT_EQ(tk.chat_template(), *gguf.get_string("tokenizer.chat_template"));
    EXPECT_EQ(tk.eos_id(), 2);
    EXPECT_TRUE(tk.is_eos(2));  // <|im_end|>
    EXPECT_FALSE(tk.add_bos());
    EXPECT_EQ(tk.encode("<|im_start|>", false, true), std::vector<int32_t>{1});
}

TEST(HfGolden, Gemma3SpecialTokensAndEos) {
    const std::string path = model_cache() + "/gemma-3-270m-q4_k_m.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not fetched";
    formats::GgufFile gguf(path);
    const Tokenizer tk = Tokenizer::from_gguf(gguf);
    EXPECT_EQ(tk.n_vocab(), 262144);
    EXPECT_EQ(tk.bos_id(), 2);
    EXPECT_EQ(tk.eos_id(), 1);
    const auto eot = tk.find_token("<end_of_turn>");
    ASSERT_TRUE(eot.has_value());
    EXPECT_TRUE(tk.is_eos(*eot)) << "<end_of_turn> ends a chat turn";
    EXPECT_TRUE(tk.is_special(*eot));
    // Without parse_special, "<end_of_turn>" is ordinary text.
    const auto plain = tk.encode("<end_of_turn>", false, false);
    EXPECT_GT(plain.size(), 1u);
    EXPECT_EQ(tk.encode("<end_of_turn>", false, true), std::vector<int32_t>{*eot});
    EXPECT_EQ(tk.chat_template().empty(), gguf.find("tokenizer.chat_template") == nullptr);
}
