// synthesize_gguf_model: one GGUF v3 file with seeded random weights in the exact shape of a real model (the GGUF
// counterpart of synthesize_hf_model; same shapes, same value generator, same seed -> the same values before
// quantization). Metadata as llama.cpp's converter writes it (general.*, <arch>.*, tokenizer.* from an HF tokenizer
// folder), tensors under GGUF names in GGUF order with llama's q/k rows permuted as llama.cpp does (so the GGUF
// model computes the same function as the HF folder), norms in F32 (gemma3: stored as 1 + w), llama3 rope scaling
// as a rope_freqs tensor, and matrices in the requested file type: f32, f16, bf16, q8_0, q4_0, or q4_k_m
// (llama.cpp's mix: Q6_K for output and for attn_v / ffn_down in the layers use_more_bits picks, Q4_K otherwise,
// with llama.cpp's fallbacks Q4_K -> Q5_0 and Q6_K -> Q8_0 for rows that are not a multiple of 256).
//
// Quantizers live in the CPU backend, which formats/ may not include: the caller passes them (QuantizeRowFn).
// The file is written tensor by tensor (a few row blocks in memory), quantization spread over a ThreadPool.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "formats/hf_config.h"
#include "formats/hf_weights.h"

namespace osprey::formats {

enum class GgufFileType { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M };
std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name);  // "q4_k_m", "Q8_0", "bf16" ...
std::string_view gguf_file_type_name(GgufFileType type);
uint32_t gguf_llama_ftype(GgufFileType type);  // general.file_type (llama_ftype: 0, 1, 32, 7, 2, 15)

// y = x[0..n) quantized to whole blocks of `dtype` (the CPU backend's quantize_row_ref fits).
using QuantizeRowFn = void (*)(DType dtype, const float* x, void* y, int64_t n);

// One tensor of the file.
struct GgufSynthTensor {
    std::string name;            // GGUF name: token_embd.weight, blk.N.attn_q.weight, ...
    std::string hf_name;         // the HF tensor whose synth values it holds ("" for rope_freqs.weight)
    HfWeightKind kind = HfWeightKind::Matrix;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;  // outermost first (HF order): a projection is {n_out, n_in}
    int permute_heads = 0;       // > 0: llama q/k rows (or bias) permuted for this many heads
    std::vector<float> values;   // fixed values (rope_freqs.weight), else empty
};

// GGUF architecture name of an HF model type: llama (llama, mistral), qwen2, qwen3, gemma3 (gemma3_text).
std::string gguf_arch_name(const HfConfig& config);
// The file's tensors in order, with their types for `type`.
std::vector<GgufSynthTensor> gguf_synth_tensors(const HfConfig& config, GgufFileType type);

struct GgufSynthOptions {
    std::string shape;          // a named shape (synth_shape_names()), or
    std::string config_path;    // a config.json
    GgufFileType file_type = GgufFileType::Q8_0;
    std::string tokenizer_dir;  // optional: tokenizer.json (+ tokenizer_config.json) converted to tokenizer.* keys
    uint64_t seed = 0;
    int64_t n_layers = 0;       // > 0: override num_hidden_layers
    std::string out_path;       // the .gguf file
    int n_threads = 0;          // <= 0: all cores
    QuantizeRowFn quantize = nullptr;  // needed for quantized file types
    std::function<void(uint64_t done_bytes, uint64_t total_bytes)> on_progress;  // optional
};

struct GgufSynthResult {
    HfConfig config;
    std::string arch;
    uint64_t file_bytes = 0;
    size_t n_tensors = 0;
    std::string tokenizer_pre;  // empty without a tokenizer
};

GgufSynthResult synthesize_gguf_model(const GgufSynthOptions& options);

}  // namespace osprey::formats
