#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"

using namespace osprey;
using namespace osprey::formats;

namespace {

// Builds small GGUF images byte by byte (the layout from the GGUF spec), independent of the reader.
struct GgufWriter {
    std::vector<uint8_t> b;
    template <typename T>
    void put(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        put<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
};

std::vector<uint8_t> small_gguf() {
    GgufWriter w;
    w.put<uint32_t>(0x46554747);
    w.put<uint32_t>(3);
    w.put<uint64_t>(2);  // tensors
    w.put<uint64_t>(4);  // kvs
    w.str("general.architecture"); w.put<uint32_t>(8); w.str("llama");
    w.str("llama.block_count"); w.put<uint32_t>(4); w.put<uint32_t>(2);
    w.str("tokenizer.ggml.scores"); w.put<uint32_t>(9); w.put<uint32_t>(6); w.put<uint64_t>(2);
    w.put<float>(0.5f); w.put<float>(-1.0f);
    w.str("tokenizer.ggml.tokens"); w.put<uint32_t>(9); w.put<uint32_t>(8); w.put<uint64_t>(2); w.str("a"); w.str("bc");
    w.str("w"); w.put<uint32_t>(2); w.put<uint64_t>(4); w.put<uint64_t>(3); w.put<uint32_t>(0); w.put<uint64_t>(0);
    w.str("q"); w.put<uint32_t>(1); w.put<uint64_t>(32); w.put<uint32_t>(8); w.put<uint64_t>(64);
    while (w.b.size() % 32) w.b.push_back(0);
    for (int i = 0; i < 12; i++) w.put<float>(float(i));
    while (w.b.size() % 32) w.b.push_back(0);
    w.b.resize(w.b.size() + 34, 0);  // one Q8_0 block
    return w.b;
}

}  // namespace

TEST(Gguf, ParsesMetadataAndTensors) {
    const auto img = small_gguf();
    GgufFile f(img.data(), img.size());
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(*f.get_string("general.architecture"), "llama");
    EXPECT_EQ(*f.get_int("llama.block_count"), 2);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "bc"}));
    EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores"), (std::vector<float>{0.5f, -1.0f}));
    ASSERT_EQ(f.tensors().size(), 2u);
    const GgufTensorInfo* w = f.find_tensor("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->shape, (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(reinterpret_cast<const float*>(w->data)[5], 5.0f);
    EXPECT_EQ(f.find_tensor("q")->dtype, DType::Q8_0);
    EXPECT_EQ(f.find_tensor("q")->n_bytes, 34u);
    EXPECT_THROW(f.get_int("general.architecture"), Error);
}

TEST(Gguf, EveryTruncationIsACleanError) {
    const auto img = small_gguf();
    for (size_t n = 0; n < img.size(); n++) {
        std::vector<uint8_t> cut(img.begin(), img.begin() + long(n));
        try {
            GgufFile f(cut.data(), cut.size());
            ADD_FAILURE() << "accepted a file cut at " << n;
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << n << ": " << e.what();
        }
    }
}

TEST(Gguf, RejectsCorruption) {
    auto img = small_gguf();
    auto expect_error = [](std::vector<uint8_t> v, ErrorCode code, const char* needle) {
        try {
            GgufFile f(v.data(), v.size());
            ADD_FAILURE() << "accepted corrupt file (" << needle << ")";
        } catch (const Error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    auto bad_magic = img; bad_magic[0] = 'X';
    expect_error(bad_magic, ErrorCode::InvalidFile, "bad magic");
    auto bad_version = img; bad_version[4] = 9;
    expect_error(bad_version, ErrorCode::Unsupported, "version 9");
    auto many_tensors = img; std::memset(&many_tensors[8], 0xff, 8);
    expect_error(many_tensors, ErrorCode::InvalidFile, "absurd tensor count");
    // Find tensor "q" type field and make it an unsupported type (IQ2_XXS = 16).
    auto unknown_type = img;
    const std::string qname = "q";
    for (size_t i = 0; i + 8 < unknown_type.size(); i++) {
        uint64_t len; std::memcpy(&len, &unknown_type[i], 8);
        if (len == 1 && unknown_type[i + 8] == 'q' && unknown_type[i + 9] == 1) {  // name "q", n_dims 1
            const size_t type_at = i + 8 + 1 + 4 + 8;
            unknown_type[type_at] = 16;
            break;
        }
    }
    expect_error(unknown_type, ErrorCode::Unsupported, "unsupported tensor type IQ2_XXS");
    auto bad_offset = img;  // last tensor's offset field -> huge
    for (size_t i = 0; i + 8 < bad_offset.size(); i++) {
        uint64_t v; std::memcpy(&v, &bad_offset[i], 8);
        if (v == 64 && i > 100) { uint64_t big = 1ull << 40; std::memcpy(&bad_offset[i], &big, 8); break; }
    }
    expect_error(bad_offset, ErrorCode::InvalidFile, "ends at byte");
}

TEST(Gguf, ReadsRealModelIfPresent) {
    const char* cache = std::getenv("OSPREY_MODEL_CACHE");
    std::string dir = cache ? cache : std::string(std::getenv("HOME") ? std::getenv("HOME") : "") + "/.cache/osprey/models";
    const std::string path = dir + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not fetched: " << path;
    GgufFile f(path);
    EXPECT_EQ(*f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.tensors().size(), 272u);
    EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
    EXPECT_EQ(f.find_tensor("token_embd.weight")->shape, (std::vector<int64_t>{49152, 576}));
}

TEST(Gguf, VocabOnlyFilesParse) {
    const std::string path = std::string(OSPREY_SHARED_DIR) + "/data/vocab-tests/ggml-vocab-llama-spm.gguf";
    GgufFile f(path);
    EXPECT_EQ(*f.get_string("tokenizer.ggml.model"), "llama");
    EXPECT_TRUE(f.tensors().empty());
}
