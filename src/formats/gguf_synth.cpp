#include "formats/gguf_synth.h"

#include <cmath>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "formats/gguf_writer.h"
#include "formats/hf_synth.h"
#include "formats/hf_tokenizer_gguf.h"

namespace osprey::formats {

namespace {

struct FileTypeInfo {
    GgufFileType type;
    const char* name;
    uint32_t llama_ftype;
};
const FileTypeInfo kFileTypes[] = {
    {GgufFileType::F32, "f32", 0},    {GgufFileType::F16, "f16", 1},   {GgufFileType::BF16, "bf16", 32},
    {GgufFileType::Q8_0, "q8_0", 7},  {GgufFileType::Q4_0, "q4_0", 2}, {GgufFileType::Q4_K_M, "q4_k_m", 15},
};

const FileTypeInfo& info(GgufFileType t) {
    for (const FileTypeInfo& i : kFileTypes)
        if (i.type == t) return i;
    raise(ErrorCode::InvalidArgument, "unknown GGUF file type");
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third one in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// llama.cpp's fallback when a row is not a whole number of 256-element super-blocks.
DType k_quant_fallback(DType t, int64_t row) {
    if (row % 256 == 0) return t;
    if (t == DType::Q4_K) return DType::Q5_0;
    if (t == DType::Q6_K) return DType::Q8_0;
    return t;
}

// The GGUF name of an HF tensor ("" when GGUF has no such tensor).
std::string gguf_name(const std::string& hf, bool gemma) {
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    const std::string prefix = "model.layers.";
    if (hf.rfind(prefix, 0) != 0) return "";
    const size_t dot = hf.find('.', prefix.size());
    const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
    const std::string rest = hf.substr(dot + 1);
    static const std::map<std::string, std::string> kMap = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},
        {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},
        {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},
        {"self_attn.o_proj.bias", "attn_output.bias"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"},
        {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
        {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},
        {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    std::string g;
    if (rest == "post_attention_layernorm.weight") g = gemma ? "post_attention_norm.weight" : "ffn_norm.weight";
    else if (auto it = kMap.find(rest); it != kMap.end()) g = it->second;
    else return "";
    return "blk." + layer + "." + g;
}

bool ends_with(const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// llama.cpp's rope_freqs for llama3 scaling: the factor each frequency is divided by.
std::vector<float> llama3_rope_factors(const HfConfig& c) {
    const RopeScaling& r = c.rope_scaling;
    const int64_t dim = c.head_dim;
    const double old_ctx = double(r.original_max_position_embeddings > 0 ? r.original_max_position_embeddings : 8192);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    std::vector<float> out;
    for (int64_t i = 0; i < dim; i += 2) {
        const float freq = float(1.0 / std::pow(c.rope_theta, double(i) / double(dim)));
        const double wavelen = 2 * M_PI / double(freq);
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back(float(r.factor));
        } else {
            const double smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
            out.push_back(float(1.0 / ((1 - smooth) / r.factor + smooth)));
        }
    }
    return out;
}

}  // namespace

std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name) {
    std::string lower(name);
    for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    for (const FileTypeInfo& i : kFileTypes)
        if (lower == i.name) return i.type;
    return std::nullopt;
}

std::string_view gguf_file_type_name(GgufFileType type) { return info(type).name; }
uint32_t gguf_llama_ftype(GgufFileType type) { return info(type).llama_ftype; }

std::string gguf_arch_name(const HfConfig& c) {
    const std::string& t = c.model_type;
    if (t == "llama" || t == "mistral") return "llama";
    if (t == "qwen2" || t == "qwen3") return t;
    if (t == "gemma3_text") return "gemma3";
    raise(ErrorCode::Unsupported, "synth: model_type '{}' has no GGUF writer (llama, mistral, qwen2, qwen3, gemma3_text)", t);
}

std::vector<GgufSynthTensor> gguf_synth_tensors(const HfConfig& c, GgufFileType type) {
    const std::string arch = gguf_arch_name(c);
    const bool gemma = arch == "gemma3", llama = arch == "llama";
    std::vector<GgufSynthTensor> out;
    if (llama && c.rope_scaling.type == RopeScalingType::Llama3) {
        GgufSynthTensor t;
        t.name = "rope_freqs.weight";
        t.kind = HfWeightKind::Norm;
        t.values = llama3_rope_factors(c);
        t.shape = {int64_t(t.values.size())};
        out.push_back(std::move(t));
    }
    const int64_t n_layers = c.num_hidden_layers;
    int64_t i_attn_v = 0, i_ffn_down = 0;
    for (const HfWeightSpec& w : hf_weight_specs(c)) {
        GgufSynthTensor t;
        t.name = gguf_name(w.name, gemma);
        if (t.name.empty()) raise(ErrorCode::Unsupported, "synth: no GGUF name for tensor '{}'", w.name);
        t.hf_name = w.name;
        t.kind = w.kind;
        t.shape = w.shape;
        if (llama && (ends_with(t.name, "attn_q.weight") || ends_with(t.name, "attn_q.bias")))
            t.permute_heads = int(c.num_attention_heads);
        if (llama && (ends_with(t.name, "attn_k.weight") || ends_with(t.name, "attn_k.bias")))
            t.permute_heads = int(c.num_key_value_heads);
        const bool matrix = w.shape.size() == 2;
        const int64_t row = w.shape.back();
        if (!matrix) {
            t.dtype = DType::F32;
        } else {
            switch (type) {
                case GgufFileType::F32: t.dtype = DType::F32; break;
                case GgufFileType::F16: t.dtype = DType::F16; break;
                case GgufFileType::BF16: t.dtype = DType::BF16; break;
                case GgufFileType::Q8_0: t.dtype = DType::Q8_0; break;
                case GgufFileType::Q4_0: t.dtype = DType::Q4_0; break;
                case GgufFileType::Q4_K_M: {
                    // llama.cpp's llama_tensor_get_type for LLAMA_FTYPE_MOSTLY_Q4_K_M.
                    DType d = DType::Q4_K;
                    const bool output = t.name == "output.weight" ||
                                        (t.name == "token_embd.weight" && c.tie_word_embeddings);
                    if (output) d = DType::Q6_K;
                    else if (ends_with(t.name, "attn_v.weight") && use_more_bits(i_attn_v, n_layers)) d = DType::Q6_K;
                    else if (ends_with(t.name, "ffn_down.weight") && use_more_bits(i_ffn_down, n_layers)) d = DType::Q6_K;
                    t.dtype = k_quant_fallback(d, row);
                    break;
                }
            }
            if (row % dtype_traits(t.dtype).block_size != 0)
                raise(ErrorCode::Unsupported, "synth: tensor '{}' rows of {} are not whole {} blocks", t.name, row,
                      dtype_name(t.dtype));
        }
        if (ends_with(t.name, "attn_v.weight")) i_attn_v++;
        if (ends_with(t.name, "ffn_down.weight")) i_ffn_down++;
        out.push_back(std::move(t));
    }
    return out;
}

GgufSynthResult synthesize_gguf_model(const GgufSynthOptions& o) {
    if (o.out_path.empty()) raise(ErrorCode::InvalidArgument, "synth: an output file (-o FILE.gguf) is needed");
    const SynthModelSpec spec = resolve_synth_model(o.shape, o.config_path, o.n_layers);
    const HfConfig& c = spec.config;
    GgufSynthResult result;
    result.config = c;
    result.arch = gguf_arch_name(c);
    const std::string& a = result.arch;
    const bool gemma = a == "gemma3";
    std::vector<GgufSynthTensor> tensors = gguf_synth_tensors(c, o.file_type);
    for (const GgufSynthTensor& t : tensors)
        if (is_quantized(t.dtype) && !o.quantize)
            raise(ErrorCode::InvalidArgument, "synth: file type {} needs a quantizer", gguf_file_type_name(o.file_type));
    if (c.rope_scaling.type == RopeScalingType::Llama3 && a != "llama")
        raise(ErrorCode::Unsupported, "synth: llama3 rope scaling is only written for llama models");

    GgufWriter w(o.out_path);
    w.add_string("general.architecture", a);
    w.add_string("general.type", "model");
    w.add_string("general.name", o.shape.empty() ? c.model_type + " (synth)" : o.shape + " (synth)");
    w.add_u32("general.file_type", gguf_llama_ftype(o.file_type));
    w.add_u32("general.quantization_version", 2);
    w.add_u32(a + ".block_count", uint32_t(c.num_hidden_layers));
    w.add_u32(a + ".context_length", uint32_t(c.max_position_embeddings));
    w.add_u32(a + ".embedding_length", uint32_t(c.hidden_size));
    w.add_u32(a + ".feed_forward_length", uint32_t(c.intermediate_size));
    w.add_u32(a + ".attention.head_count", uint32_t(c.num_attention_heads));
    w.add_u32(a + ".attention.head_count_kv", uint32_t(c.num_key_value_heads));
    w.add_u32(a + ".attention.key_length", uint32_t(c.head_dim));
    w.add_u32(a + ".attention.value_length", uint32_t(c.head_dim));
    w.add_f32(a + ".rope.freq_base", float(c.rope_theta));
    w.add_f32(a + ".attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
    w.add_u32(a + ".vocab_size", uint32_t(c.vocab_size));
    w.add_u32(a + ".rope.dimension_count", uint32_t(c.head_dim));
    switch (c.rope_scaling.type) {
        case RopeScalingType::None: break;
        case RopeScalingType::Linear:
            w.add_string(a + ".rope.scaling.type", "linear");
            w.add_f32(a + ".rope.scaling.factor", float(c.rope_scaling.factor));
            break;
        case RopeScalingType::Llama3:
            // As llama.cpp's converter: the factors travel in rope_freqs.weight. rope.scaling.factor is left out on
            // purpose (llama.cpp would read it as an extra linear scale); the other keys only inform readers.
            w.add_f32(a + ".rope.scaling.low_freq_factor", float(c.rope_scaling.low_freq_factor));
            w.add_f32(a + ".rope.scaling.high_freq_factor", float(c.rope_scaling.high_freq_factor));
            if (c.rope_scaling.original_max_position_embeddings > 0)
                w.add_u32(a + ".rope.scaling.original_context_length",
                          uint32_t(c.rope_scaling.original_max_position_embeddings));
            break;
    }
    if (gemma) {
        if (c.sliding_window) w.add_u32(a + ".attention.sliding_window", uint32_t(*c.sliding_window));
        if (c.final_logit_softcapping) w.add_f32(a + ".final_logit_softcapping", float(*c.final_logit_softcapping));
        if (c.attn_logit_softcapping) w.add_f32(a + ".attn_logit_softcapping", float(*c.attn_logit_softcapping));
    }
    if (!o.tokenizer_dir.empty()) {
        std::vector<int64_t> eos = spec.generation.eos_token_ids;
        if (eos.empty()) eos = c.eos_token_ids;
        result.tokenizer_pre = add_hf_tokenizer_to_gguf(w, o.tokenizer_dir, c.vocab_size, eos).pre;
    }

    for (const GgufSynthTensor& t : tensors) w.add_tensor(t.name, t.dtype, t.shape);
    const uint64_t total = w.data_bytes();
    w.begin_data();

    ThreadPool pool(o.n_threads);
    constexpr int64_t kChunkElems = int64_t(1) << 24;  // ~16M elements per step (64 MB as f32, less quantized)
    std::vector<uint8_t> buf;
    uint64_t done = 0;
    for (const GgufSynthTensor& t : tensors) {
        const int64_t row_len = t.shape.back();
        const int64_t n_rows = t.shape.size() == 2 ? t.shape[0] : 1;
        const size_t row_bytes = dtype_row_bytes(t.dtype, row_len);
        const uint64_t tseed = t.hf_name.empty() ? 0 : synth_tensor_seed(o.seed, t.hf_name);
        const int64_t hd = t.permute_heads > 0 ? (t.shape[0] / t.permute_heads) : 0;
        // llama.cpp's permute: GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i.
        auto hf_row = [&](int64_t r) {
            if (hd == 0) return r;
            const int64_t h = r / hd, k = r % hd;
            return h * hd + (k % 2) * (hd / 2) + k / 2;
        };
        const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElems / row_len);
        for (int64_t r0 = 0; r0 < n_rows; r0 += rows_per_chunk) {
            const int64_t nr = std::min(rows_per_chunk, n_rows - r0);
            buf.resize(size_t(nr) * row_bytes);
            pool.parallel_for(nr, 1, [&](int64_t b, int64_t e) {
                std::vector<float> row(static_cast<size_t>(row_len));
                for (int64_t r = b; r < e; r++) {
                    if (!t.values.empty()) {
                        std::memcpy(row.data(), t.values.data(), size_t(row_len) * sizeof(float));
                    } else if (t.shape.size() == 1 && hd > 0) {  // a permuted bias
                        for (int64_t i = 0; i < row_len; i++)
                            synth_fill(tseed, t.kind, false, uint64_t(hf_row(i)), 1, &row[size_t(i)]);
                    } else {
                        // GGUF stores gemma norms as 1 + w: the HF value of a gemma norm (0) plus 1 is what the
                        // non-gemma generator gives (1).
                        synth_fill(tseed, t.kind, false, uint64_t(hf_row(r0 + r)) * uint64_t(row_len), row_len,
                                   row.data());
                    }
                    uint8_t* dst = buf.data() + size_t(r) * row_bytes;
                    switch (t.dtype) {
                        case DType::F32: std::memcpy(dst, row.data(), row_bytes); break;
                        case DType::F16:
                            for (int64_t i = 0; i < row_len; i++) {
                                const uint16_t h = fp32_to_fp16(row[size_t(i)]);
                                std::memcpy(dst + 2 * i, &h, 2);
                            }
                            break;
                        case DType::BF16:
                            for (int64_t i = 0; i < row_len; i++) {
                                const uint16_t h = fp32_to_bf16(row[size_t(i)]);
                                std::memcpy(dst + 2 * i, &h, 2);
                            }
                            break;
                        default: o.quantize(t.dtype, row.data(), dst, row_len);
                    }
                }
            });
            w.append(buf.data(), buf.size());
            done += buf.size();
            if (o.on_progress) o.on_progress(done, total);
        }
    }
    w.finish();
    result.file_bytes = w.file_bytes();
    result.n_tensors = tensors.size();
    if (o.on_progress) o.on_progress(total, total);
    return result;
}

}  // namespace osprey::formats
