// libFuzzer target: SafetensorsFile on arbitrary bytes must either parse or throw osprey::Error — never crash or
// read out of bounds. Parsed tensors are touched at both ends and viewed.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace osprey;
    try {
        formats::SafetensorsFile f(data, size, "fuzz.safetensors");
        volatile uint64_t sum = f.metadata().size();
        for (const auto& t : f.tensors()) {
            if (t.n_bytes > 0) sum = sum + t.data[0] + t.data[t.n_bytes - 1];
            try {
                sum = sum + uint64_t(t.view().numel());
            } catch (const Error&) {
            }
            if (f.find_tensor(t.name) != &t) __builtin_trap();
        }
    } catch (const Error&) {
    }
    return 0;
}
