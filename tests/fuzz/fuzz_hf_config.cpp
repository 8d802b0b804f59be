// libFuzzer target: config.json and generation_config.json text. The input is split at the first NUL byte: the
// part before goes to HfConfig::parse, the part after to GenerationConfig::parse (the whole input also goes to
// both when there is no NUL). Either parses or throws osprey::Error — never crashes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "formats/hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace osprey;
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    const size_t nul = all.find('\0');
    const std::string_view config = nul == std::string_view::npos ? all : all.substr(0, nul);
    const std::string_view gen = nul == std::string_view::npos ? all : all.substr(nul + 1);
    try {
        const formats::HfConfig c = formats::HfConfig::parse(config);
        if (int64_t(c.layer_types.size()) != c.num_hidden_layers) __builtin_trap();
        if (c.num_attention_heads % c.num_key_value_heads != 0 || c.head_dim <= 0) __builtin_trap();
        for (int64_t i = 0; i < c.num_hidden_layers; i++) (void)c.is_sliding(i);
    } catch (const Error&) {
    }
    try {
        (void)formats::GenerationConfig::parse(gen);
    } catch (const Error&) {
    }
    return 0;
}
