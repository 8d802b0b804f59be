// Tokenizer behaviour beyond the reference cases: invalid UTF-8 and control bytes, tokenizer.json features on a
// tiny hand-made vocabulary (expected ids worked out by hand), malformed tokenizer.json files, the incremental
// decoder on split characters, NFC, and encoding speed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/incremental_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_text.h"

using namespace osprey;
using namespace osprey::tokenizer;

namespace {

std::string shared_dir() {
    const char* env = std::getenv("OSPREY_SHARED_DIR");
    return env != nullptr && *env != '\0' ? env : OSPREY_SHARED_DIR;
}

std::string vocab_gguf(const std::string& name) { return shared_dir() + "/data/vocab-tests/ggml-vocab-" + name + ".gguf"; }

Tokenizer load_gguf(const std::string& path) {
    formats::GgufFile g(path);
    return Tokenizer::from_gguf(g);
}

// Files under one directory per test process, removed when the process exits.
std::string write_temp(const std::string& name, const std::string& content) {
    struct TempDir {
        std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("osprey_tok_test_" + std::to_string(::getpid()));
        ~TempDir() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const TempDir dir;
    std::filesystem::create_directories(dir.path);
    const auto path = dir.path / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
}

const std::vector<std::string>& nasty_inputs() {
    static const std::vector<std::string> inputs = {
        std::string("\xff\xfe\xfd"),
        std::string("abc\x80\x81 def"),
        std::string("\xc3"),                      // truncated 2-byte sequence
        std::string("\xe4\xbd"),                  // truncated 3-byte sequence
        std::string("\xf0\x9f\x98"),              // truncated emoji
        std::string("\xed\xa0\x80 surrogate"),    // encoded surrogate (invalid)
        std::string("\xc0\xaf overlong"),
        std::string("x\x00y\x01\x02\x1b[31m\x7f", 12),  // NUL, control bytes, ANSI escape
        std::string("\r\r\n\v\f\t "),
        std::string("mixed \xe4\xbd\xa0\xff\xe5\xa5\xbd ok"),
    };
    return inputs;
}

}  // namespace

TEST(TokenizerRobustness, InvalidUtf8ByteLevelRoundTrips) {
    for (const char* name : {"gpt-2"}) {
        if (!std::filesystem::exists(vocab_gguf(name))) GTEST_SKIP() << "missing " << vocab_gguf(name);
        const Tokenizer tk = load_gguf(vocab_gguf(name));
        for (const auto& s : nasty_inputs()) {
            const auto ids = tk.encode(s, false, false);
            EXPECT_FALSE(ids.empty());
            EXPECT_EQ(tk.decode(ids), s) << name;
            // The incremental decoder never emits invalid UTF-8.
            IncrementalDecoder dec(tk);
            for (int32_t id : ids) EXPECT_TRUE(is_valid_utf8(dec.push(id)));
            EXPECT_TRUE(is_valid_utf8(dec.flush()));
        }
    }
}

TEST(TokenizerRobustness, InvalidUtf8TokenizerJsonRoundTrips) {
    const std::string dir = shared_dir() + "/data/tokenizers/llama3";
    if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "missing " << dir;
    const Tokenizer tk = Tokenizer::from_path(dir);
    for (const auto& s : nasty_inputs()) EXPECT_EQ(tk.decode(tk.encode(s, false, false)), s);
}

TEST(TokenizerRobustness, InvalidUtf8SentencePieceUsesByteFallback) {
    if (!std::filesystem::exists(vocab_gguf("llama-spm"))) GTEST_SKIP() << "missing";
    const Tokenizer tk = load_gguf(vocab_gguf("llama-spm"));
    // "\xff" is not a character: it must become the byte token <0xFF>.
    const auto ids = tk.encode("\xff", false, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(tk.token_text(ids.back()), "<0xFF>");
    for (const auto& s : nasty_inputs()) {
        const auto enc = tk.encode(s, true, false);
        ASSERT_FALSE(enc.empty());
        EXPECT_EQ(enc.front(), tk.bos_id());
        // SentencePiece byte fallback keeps every byte; decode drops BOS and the added leading space.
        EXPECT_EQ(tk.decode(enc, /*skip_special=*/true), s);
    }
}

TEST(TokenizerBehaviour, SpmBosAndSpacePrefix) {
    if (!std::filesystem::exists(vocab_gguf("llama-spm"))) GTEST_SKIP() << "missing";
    const Tokenizer tk = load_gguf(vocab_gguf("llama-spm"));
    EXPECT_EQ(tk.bos_id(), 1);
    EXPECT_EQ(tk.eos_id(), 2);
    EXPECT_TRUE(tk.add_bos());
    EXPECT_EQ(tk.encode("", true, false), std::vector<int32_t>{1});
    EXPECT_TRUE(tk.encode("", false, false).empty());
    const auto ids = tk.encode("Hello", true, false);
    ASSERT_EQ(ids.size(), 2u);
    EXPECT_EQ(tk.token_text(ids[1]), "\xE2\x96\x81Hello");  // "▁Hello": the space prefix
    EXPECT_EQ(tk.decode(ids, true), "Hello");
    // Special-token text is only a token with parse_special.
    EXPECT_EQ(tk.encode("</s>", false, true), std::vector<int32_t>{2});
    EXPECT_NE(tk.encode("</s>", false, false), std::vector<int32_t>{2});
}

TEST(TokenizerBehaviour, IncrementalDecoderHoldsSplitCharacters) {
    if (!std::filesystem::exists(vocab_gguf("gpt-2"))) GTEST_SKIP() << "missing";
    const Tokenizer tk = load_gguf(vocab_gguf("gpt-2"));
    // GPT-2 has no token for these emoji: they are split into byte tokens.
    const std::string text = "a\xF0\x9F\xA6\x84\xF0\x9F\xA7\x8C b";
    const auto ids = tk.encode(text, false, false);
    IncrementalDecoder dec(tk);
    std::string joined;
    int empty_chunks = 0;
    for (int32_t id : ids) {
        const std::string c = dec.push(id);
        EXPECT_TRUE(is_valid_utf8(c));
        if (c.empty()) ++empty_chunks;
        joined += c;
    }
    joined += dec.flush();
    EXPECT_EQ(joined, text);
    EXPECT_GT(empty_chunks, 0) << "partial UTF-8 must be held back";
    // A stray continuation byte followed by end of stream comes out as U+FFFD, never as a broken sequence.
    IncrementalDecoder dec2(tk);
    const auto bad = tk.encode("\xe4\xbd", false, false);
    std::string out;
    for (int32_t id : bad) out += dec2.push(id);
    out += dec2.flush();
    EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerBehaviour, NfcNormalizer) {
    if (!nfc_available()) GTEST_SKIP() << "built without ICU (OSPREY_WITH_ICU): NFC is a no-op";
    const std::string dir = shared_dir() + "/data/tokenizers/qwen3";
    if (!std::filesystem::exists(dir + "/tokenizer.json")) GTEST_SKIP() << "missing " << dir;
    const Tokenizer tk = Tokenizer::from_path(dir);
    EXPECT_EQ(nfc_normalize("e\xCC\x81"), "\xC3\xA9");  // e + combining acute -> é
    EXPECT_EQ(tk.encode("caf\x65\xCC\x81", false, false), tk.encode("caf\xC3\xA9", false, false));
    EXPECT_EQ(tk.chat_template().find("<|im_start|>") != std::string::npos, true);
    EXPECT_TRUE(tk.is_eos(*tk.find_token("<|im_end|>")));
}

// A tiny character-level BPE with byte fallback, Replace normalizer and TemplateProcessing (the Gemma-style
// tokenizer.json layout). Ids worked out by hand from the merges.
TEST(TokenizerJson, CharBpeWithByteFallbackAndTemplate) {
    std::string vocab = R"("<unk>":0,"<s>":1,"</s>":2,"a":3,"b":4,"c":5,"▁":6,"ab":7,"abc":8,"▁abc":9)";
    for (int b = 0; b < 256; ++b) vocab += fmt::format(",\"<0x{:02X}>\":{}", b, 10 + b);
    const std::string json = R"({"version":"1.0","added_tokens":[
        {"id":0,"content":"<unk>","special":true,"lstrip":false,"rstrip":false,"normalized":false},
        {"id":1,"content":"<s>","special":true,"lstrip":false,"rstrip":false,"normalized":false},
        {"id":2,"content":"</s>","special":true,"lstrip":true,"rstrip":true,"normalized":false},
        {"id":266,"content":"<tag>","special":false,"lstrip":false,"rstrip":false,"normalized":false}],
      "normalizer":{"type":"Replace","pattern":{"String":" "},"content":"▁"},
      "pre_tokenizer":null,
      "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},
          {"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
      "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},
          {"type":"ByteFallback"},{"type":"Fuse"}]},
      "model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,
        "vocab":{)" + vocab + R"(},"merges":[["a","b"],"ab c",["▁","abc"]]}})";
    const std::string path = write_temp("char_bpe.json", json);
    const Tokenizer tk = Tokenizer::from_hf_json(path, "");
    EXPECT_EQ(tk.n_vocab(), 267);
    // "abc abc": a+b (rank 0) -> ab, ab+c -> abc; "▁"+"abc" -> ▁abc.
    EXPECT_EQ(tk.encode("abc abc", false, false), (std::vector<int32_t>{8, 9}));
    EXPECT_EQ(tk.encode("abc", true, false), (std::vector<int32_t>{1, 8}));  // BOS from TemplateProcessing
    // "é" is not in the vocab: UTF-8 bytes C3 A9 via byte fallback (<0xC3> = 10 + 0xC3).
    EXPECT_EQ(tk.encode("\xC3\xA9", false, false), (std::vector<int32_t>{10 + 0xC3, 10 + 0xA9}));
    EXPECT_EQ(tk.decode({10 + 0xC3, 10 + 0xA9}), "\xC3\xA9");
    // Non-special added token is always split out; special ones only with parse_special; lstrip/rstrip eat spaces.
    EXPECT_EQ(tk.encode("a<tag>b", false, false), (std::vector<int32_t>{3, 266, 4}));
    EXPECT_EQ(tk.encode("a </s> b", false, true), (std::vector<int32_t>{3, 2, 4}));
    EXPECT_EQ(tk.decode(tk.encode("abc abc", false, false)), "abc abc");
}

TEST(TokenizerJson, ByteLevelDigitsAndStringMerges) {
    // Byte-level BPE with individual digits (SmolLM-style pre-tokenizer), merges as "a b" strings.
    std::string vocab;
    for (int b = 0; b < 256; ++b) vocab += fmt::format("{}\"{}\":{}", b ? "," : "", [&] {
        std::string s = byte_to_unicode(static_cast<uint8_t>(b));
        return s == "\"" ? std::string("\\\"") : s == "\\" ? std::string("\\\\") : s;
    }(), b);
    vocab += ",\"12\":256,\"Ġh\":257,\"Ġhi\":258";
    const std::string json = R"({"added_tokens":[],"normalizer":null,
      "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},
          {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]},
      "post_processor":null,"decoder":{"type":"ByteLevel"},
      "model":{"type":"BPE","vocab":{)" + vocab + R"(},"merges":["1 2","Ġ h","Ġh i"]}})";
    const Tokenizer tk = Tokenizer::from_hf_json(write_temp("bl.json", json), "");
    // Digits are isolated one by one, so the "12" merge never applies; " hi" merges fully.
    EXPECT_EQ(tk.encode("12 hi", false, false), (std::vector<int32_t>{'1', '2', 258}));
    EXPECT_EQ(tk.decode({'1', '2', 258}), "12 hi");
}

TEST(TokenizerJson, MalformedFilesGiveInvalidFile) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}", "malformed JSON"},
        {"[1, 2, 3]", "must be an object"},
        {"{\"added_tokens\": []}", "no 'model'"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": [1, 2]}}", "model.vocab"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"zero\"}}}", "must be an integer"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [42]}}", "model.merges[0]"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": \"a b\"}}", "model.merges"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"added_tokens\": [{\"id\": 1, \"content\": 5}]}",
         "added_tokens[0].content"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"added_tokens\": {\"x\": 1}}", "added_tokens"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"type\": \"Split\", "
         "\"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}", "regex"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": {\"pretokenizers\": []}}",
         "pre_tokenizer"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"byte_fallback\": \"yes\"}}", "byte_fallback"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", "empty"},
        {"", "malformed JSON"},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string path = write_temp("bad" + std::to_string(i) + ".json", cases[i].first);
        try {
            (void)Tokenizer::from_hf_json(path, "");
            ADD_FAILURE() << "case " << i << " was accepted: " << cases[i].first;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << "case " << i << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(cases[i].second), std::string::npos)
                << "case " << i << " message: " << e.what();
        }
    }
    // A malformed tokenizer_config.json is reported too.
    const std::string ok = write_temp("ok.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}");
    const std::string bad_cfg = write_temp("bad_config.json", "{\"chat_template\": 12}");
    try {
        (void)Tokenizer::from_hf_json(ok, bad_cfg);
        ADD_FAILURE() << "bad tokenizer_config.json accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << e.what();
    }
    // Unsupported model types say so.
    try {
        (void)Tokenizer::from_hf_json(write_temp("uni.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}"), "");
        ADD_FAILURE() << "Unigram accepted";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Unsupported) << e.what();
    }
}

TEST(TokenizerPerformance, OneMegabyteUnderASecond) {
    const std::string corpus = shared_dir() + "/data/eval/wikitext-2-raw-test.txt";
    const std::string qwen = shared_dir() + "/data/tokenizers/qwen3";
    if (!std::filesystem::exists(corpus) || !std::filesystem::exists(qwen)) GTEST_SKIP() << "missing shared data";
    std::ifstream in(corpus, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str().substr(0, 1 << 20);
    std::vector<std::pair<std::string, Tokenizer>> tks;
    tks.emplace_back("qwen3 (151k, tokenizer.json)", Tokenizer::from_path(qwen));
    const char* home = std::getenv("HOME");
    const std::string gemma = std::string(home ? home : "/root") + "/.cache/osprey/models/gemma-3-270m-q4_k_m.gguf";
    if (std::filesystem::exists(gemma)) tks.emplace_back("gemma3 (262k, SentencePiece)", Tokenizer::from_path(gemma));
    for (const auto& [name, tk] : tks) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto ids = tk.encode(text, false, false);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%s: 1 MiB -> %zu tokens in %.3f s\n", name.c_str(), ids.size(), s);
        EXPECT_GT(ids.size(), 100000u);
        EXPECT_LT(s, 1.0) << name << " (typically ~0.2 s)";
        EXPECT_EQ(tk.decode(ids), text);
    }
}
