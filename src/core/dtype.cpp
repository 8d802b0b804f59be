#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "core/quant_blocks.h"

namespace osprey {

namespace {

constexpr std::array<DTypeTraits, kNumDTypes> kTraits = {{
    {"f32", 1, 4, false, 0},
    {"f16", 1, 2, false, 1},
    {"bf16", 1, 2, false, 30},
    {"f64", 1, 8, false, 28},
    {"i8", 1, 1, false, 24},
    {"i16", 1, 2, false, 25},
    {"i32", 1, 4, false, 26},
    {"i64", 1, 8, false, 27},
    {"q4_0", kQK4_0, sizeof(BlockQ4_0), true, 2},
    {"q4_1", kQK4_1, sizeof(BlockQ4_1), true, 3},
    {"q5_0", kQK5_0, sizeof(BlockQ5_0), true, 6},
    {"q5_1", kQK5_1, sizeof(BlockQ5_1), true, 7},
    {"q8_0", kQK8_0, sizeof(BlockQ8_0), true, 8},
    {"q8_1", kQK8_1, sizeof(BlockQ8_1), true, 9},
    {"q2_k", kQK_K, sizeof(BlockQ2_K), true, 10},
    {"q3_k", kQK_K, sizeof(BlockQ3_K), true, 11},
    {"q4_k", kQK_K, sizeof(BlockQ4_K), true, 12},
    {"q5_k", kQK_K, sizeof(BlockQ5_K), true, 13},
    {"q6_k", kQK_K, sizeof(BlockQ6_K), true, 14},
    {"q8_k", kQK_K, sizeof(BlockQ8_K), true, 15},
}};

// ggml type ids 0..41 by name, including the ones Osprey does not load, for error messages.
constexpr std::array<std::string_view, 42> kGgmlNames = {
    "F32",     "F16",    "Q4_0",    "Q4_1",   "Q4_2",   "Q4_3",    "Q5_0",    "Q5_1",    "Q8_0",
    "Q8_1",    "Q2_K",   "Q3_K",    "Q4_K",   "Q5_K",   "Q6_K",    "Q8_K",    "IQ2_XXS", "IQ2_XS",
    "IQ3_XXS", "IQ1_S",  "IQ4_NL",  "IQ3_S",  "IQ2_S",  "IQ4_XS",  "I8",      "I16",     "I32",
    "I64",     "F64",    "IQ1_M",   "BF16",   "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
    "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0"};

}  // namespace

const DTypeTraits& dtype_traits(DType dtype) { return kTraits[size_t(dtype)]; }

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
    for (int i = 0; i < kNumDTypes; i++)
        if (kTraits[i].ggml_type == int(ggml_type)) return DType(i);
    return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; i < kNumDTypes; i++)
        if (kTraits[i].name == lower) return DType(i);
    return std::nullopt;
}

std::string_view ggml_type_name(uint32_t ggml_type) {
    if (ggml_type < kGgmlNames.size()) return kGgmlNames[ggml_type];
    return "unknown";
}

}  // namespace osprey
