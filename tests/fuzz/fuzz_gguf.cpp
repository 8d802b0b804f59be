// libFuzzer target: GgufFile on arbitrary bytes must either parse or throw osprey::Error — never crash or read
// out of bounds. Parsed files are walked (metadata accessors, tensor views) to reach the accessor code too.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace osprey;
    try {
        formats::GgufFile f(data, size, "fuzz.gguf");
        for (const auto& [key, value] : f.metadata()) {
            try {
                if (value.is_array()) {
                    (void)f.get_string_array(key);
                } else {
                    (void)value.as_float(key);
                }
            } catch (const Error&) {
            }
        }
        volatile uint64_t sum = 0;
        for (const auto& t : f.tensors()) {
            const Tensor v = t.view();
            if (t.n_bytes > 0) sum = sum + t.data[0] + t.data[t.n_bytes - 1];
            sum = sum + uint64_t(v.numel());
            (void)f.find_tensor(t.name);
        }
    } catch (const Error&) {
    }
    return 0;
}
