// Shared helpers of the model tests: where the fetched models live, and the golden file reader.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace osprey::test_util {

inline std::string model_cache() {
    if (const char* d = std::getenv("OSPREY_MODEL_CACHE"); d && *d) return d;
    const char* home = std::getenv("HOME");
    return std::string(home ? home : ".") + "/.cache/osprey/models";
}

inline std::string smollm2_path() { return model_cache() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }
inline std::string gemma3_path() { return model_cache() + "/gemma-3-270m-q4_k_m.gguf"; }

// tests/golden/data/model/<name>.golden, written by tests/golden/make_model_goldens.py (HF transformers, float32).
struct ModelGolden {
    std::vector<int32_t> tokens;      // [n + 1]
    int k = 0;
    std::vector<int32_t> top_ids;     // [n, k]
    std::vector<float> top_logprobs;  // [n, k]
    int n_positions() const { return int(tokens.size()) - 1; }
};

inline ModelGolden read_golden_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("missing golden " + path);
    char magic[4];
    uint32_t version, n_tokens, k;
    f.read(magic, 4);
    f.read(reinterpret_cast<char*>(&version), 4);
    f.read(reinterpret_cast<char*>(&n_tokens), 4);
    f.read(reinterpret_cast<char*>(&k), 4);
    if (std::memcmp(magic, "OSPG", 4) != 0 || version != 1) throw std::runtime_error("bad golden " + path);
    ModelGolden g;
    g.k = int(k);
    g.tokens.resize(n_tokens);
    g.top_ids.resize(size_t(n_tokens - 1) * k);
    g.top_logprobs.resize(size_t(n_tokens - 1) * k);
    f.read(reinterpret_cast<char*>(g.tokens.data()), std::streamsize(g.tokens.size() * 4));
    f.read(reinterpret_cast<char*>(g.top_ids.data()), std::streamsize(g.top_ids.size() * 4));
    f.read(reinterpret_cast<char*>(g.top_logprobs.data()), std::streamsize(g.top_logprobs.size() * 4));
    if (!f) throw std::runtime_error("truncated golden " + path);
    return g;
}

inline ModelGolden read_model_golden(const std::string& name) {
    return read_golden_file(std::string(OSPREY_SOURCE_DIR) + "/tests/golden/data/model/" + name + ".golden");
}

}  // namespace osprey::test_util
