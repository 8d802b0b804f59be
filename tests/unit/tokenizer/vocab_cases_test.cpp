// llama.cpp's tokenizer reference cases (shared/data/vocab-tests): every case must give the expected ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

using namespace osprey;
using namespace osprey::tokenizer;

namespace {

std::string shared_dir() {
    const char* env = std::getenv("OSPREY_SHARED_DIR");
    return env != nullptr && *env != '\0' ? env : OSPREY_SHARED_DIR;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct Case {
    std::string text;
    std::vector<int32_t> ids;
};

// .inp: each case is followed by "\n__ggml_vocab_test__\n"; .out: one line of space-separated ids per case.
std::vector<Case> load_cases(const std::string& base) {
    const std::string inp = read_file(base + ".inp");
    const std::string out = read_file(base + ".out");
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<Case> cases;
    size_t pos = 0;
    while (pos < inp.size()) {
        const size_t hit = inp.find(sep, pos);
        if (hit == std::string::npos) break;
        cases.push_back(Case{inp.substr(pos, hit - pos), {}});
        pos = hit + sep.size();
    }
    std::istringstream lines(out);
    std::string line;
    size_t i = 0;
    while (std::getline(lines, line) && i < cases.size()) {
        std::istringstream ids(line);
        int32_t id;
        while (ids >> id) cases[i].ids.push_back(id);
        ++i;
    }
    EXPECT_EQ(i, cases.size()) << base << ": .out has fewer lines than .inp has cases";
    return cases;
}

void check_cases(const Tokenizer& tk, const std::string& name) {
    const std::string base = shared_dir() + "/data/vocab-tests/ggml-vocab-" + name + ".gguf";
    const auto cases = load_cases(base);
    ASSERT_GT(cases.size(), 40u) << base;
    int failures = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto got = tk.encode(cases[i].text, /*add_special=*/false, /*parse_special=*/false);
        EXPECT_EQ(got, cases[i].ids) << name << " case " << i << ": '" << cases[i].text << "'";
        if (got != cases[i].ids) ++failures;
    }
    EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << cases.size() << " cases differ";
}

void check_gguf(const std::string& name) {
    const std::string path = shared_dir() + "/data/vocab-tests/ggml-vocab-" + name + ".gguf";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << path;
    formats::GgufFile gguf(path);
    check_cases(Tokenizer::from_gguf(gguf), name);
}

void check_json(const std::string& name, const std::string& dir) {
    const std::string folder = shared_dir() + "/data/tokenizers/" + dir;
    if (!std::filesystem::exists(folder + "/tokenizer.json")) GTEST_SKIP() << "missing " << folder;
    check_cases(Tokenizer::from_hf_json(folder + "/tokenizer.json", folder + "/tokenizer_config.json"), name);
}

}  // namespace

TEST(VocabCases, LlamaSpm) { check_gguf("llama-spm"); }
TEST(VocabCases, Gpt2) { check_gguf("gpt-2"); }
TEST(VocabCases, Phi3) { check_gguf("phi-3"); }
TEST(VocabCases, LlamaBpeFromTokenizerJson) { check_json("llama-bpe", "llama3"); }
TEST(VocabCases, Qwen2FromTokenizerJson) { check_json("qwen2", "qwen3"); }
