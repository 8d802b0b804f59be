// libFuzzer target: Tokenizer::from_hf_json on arbitrary tokenizer.json (+ tokenizer_config.json) text. The input is
// split at the first NUL byte: tokenizer.json before, tokenizer_config.json after (none when there is no NUL).
// Loading either succeeds or throws osprey::Error; a loaded tokenizer then encodes and decodes a few strings
// (including the input's own bytes) and every piece — none of it may crash.
// from_hf_json reads files, so the parts are written to a per-process folder in /dev/shm (or $TMPDIR).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string g_dir;

void write_file(const std::string& path, std::string_view data) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (!data.empty() && std::fwrite(data.data(), 1, data.size(), f) != data.size()) std::abort();
    std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
    std::string tmpl = std::string(base) + "/osprey_fuzz_tok_XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    g_dir = tmpl;
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace osprey;
    const std::string_view all(reinterpret_cast<const char*>(data), size);
    const size_t nul = all.find('\0');
    const std::string tok_path = g_dir + "/tokenizer.json";
    const std::string cfg_path = g_dir + "/tokenizer_config.json";
    write_file(tok_path, all.substr(0, nul));
    if (nul != std::string_view::npos) write_file(cfg_path, all.substr(nul + 1));
    else std::remove(cfg_path.c_str());
    try {
        const tokenizer::Tokenizer tk =
            tokenizer::Tokenizer::from_hf_json(tok_path, nul != std::string_view::npos ? cfg_path : "");
        const int32_t n = tk.n_vocab();
        for (const std::string_view text : {std::string_view("Hello world! 123 naïve 日本"), all.substr(0, 256)}) {
            for (bool special : {false, true}) {
                const std::vector<int32_t> ids = tk.encode(text, special, special);
                for (int32_t id : ids)
                    if (id < 0 || id >= n) __builtin_trap();
                (void)tk.decode(ids, special);
            }
        }
        for (int32_t id = 0; id < n && id < 2048; id++) {
            (void)tk.token_to_piece(id);
            (void)tk.is_special(id);
        }
        (void)tk.chat_template();
    } catch (const Error&) {
    }
    return 0;
}
