// DType: every element type Osprey knows, with one constexpr traits table (name, block size, bytes per block).
// Quantized types store rows as whole blocks (see core/quant_blocks.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace osprey {

enum class DType : uint8_t {
    F32, F16, BF16, F64,
    I8, I16, I32, I64,
    Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
    Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
};
constexpr int kNumDTypes = int(DType::Q8_K) + 1;

struct DTypeTraits {
    std::string_view name;   // "f32", "q4_k", ...
    int64_t block_size;      // elements per block (1 for plain types)
    int64_t block_bytes;     // bytes per block
    bool is_quantized;
    int ggml_type;           // GGUF/ggml type id, -1 when GGUF has none
};

const DTypeTraits& dtype_traits(DType dtype);
inline std::string_view dtype_name(DType dtype) { return dtype_traits(dtype).name; }
inline bool is_quantized(DType dtype) { return dtype_traits(dtype).is_quantized; }

// Bytes of a row of n elements; n must be a multiple of the block size (checked by the callers that validate input).
inline size_t dtype_row_bytes(DType dtype, int64_t n) {
    const DTypeTraits& t = dtype_traits(dtype);
    return size_t(n / t.block_size) * size_t(t.block_bytes);
}

// GGUF type id -> DType; nullopt for ids Osprey does not know (the caller reports "unsupported tensor type").
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
// "F32", "bf16", "Q4_K" ... (case-insensitive) -> DType
std::optional<DType> dtype_from_name(std::string_view name);
// Name of a GGUF type id, also for ids Osprey does not support ("IQ2_XXS"); "type N" when unknown.
std::string_view ggml_type_name(uint32_t ggml_type);

}  // namespace osprey
