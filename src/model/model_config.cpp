#include "model/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "formats/gguf.h"

namespace osprey::model {

const char* arch_name(Arch arch) {
    switch (arch) {
        case Arch::Llama: return "llama";
        case Arch::Qwen2: return "qwen2";
        case Arch::Qwen3: return "qwen3";
        case Arch::Gemma3: return "gemma3";
    }
    return "?";
}

std::vector<float> ModelConfig::rope_inv_freq(bool sliding_layer) const {
    const int half = head_dim / 2;
    const double theta = sliding_layer ? rope_theta_local : rope_theta;
    std::vector<float> inv(static_cast<size_t>(half));
    for (int i = 0; i < half; i++) {
        double f = 1.0 / std::pow(theta, double(2 * i) / head_dim);
        if (!sliding_layer && rope_scaling == RopeScaling::Linear) f /= rope_factor;
        if (!sliding_layer && rope_scaling == RopeScaling::Llama3) {
            // Llama 3.1: keep high frequencies, divide low ones by factor, interpolate between.
            const double low_wavelen = rope_original_max_context / rope_low_freq_factor;
            const double high_wavelen = rope_original_max_context / rope_high_freq_factor;
            const double wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / rope_factor;
            } else if (wavelen >= high_wavelen) {
                const double smooth = (rope_original_max_context / wavelen - rope_low_freq_factor) /
                                      (rope_high_freq_factor - rope_low_freq_factor);
                f = (1 - smooth) * f / rope_factor + smooth * f;
            }
        }
        inv[size_t(i)] = float(f);
    }
    return inv;
}

void ModelConfig::validate(const std::string& source) const {
    auto positive = [&](long v, const char* what) {
        if (v <= 0) raise(ErrorCode::InvalidFile, "{}: {} must be positive, got {}", source, what, v);
    };
    positive(n_layers, "layer count");
    positive(d_model, "hidden size");
    positive(n_heads, "head count");
    positive(n_kv_heads, "KV head count");
    positive(head_dim, "head dimension");
    positive(d_ff, "feed-forward size");
    positive(n_vocab, "vocabulary size");
    positive(max_context, "context length");
    if (n_layers > 1024 || d_model > (1 << 17) || n_heads > 4096 || head_dim > 1024 || d_ff > (1 << 20) ||
        n_vocab > (1 << 22))
        raise(ErrorCode::InvalidFile, "{}: absurd model dimensions", source);
    if (n_heads % n_kv_heads != 0)
        raise(ErrorCode::InvalidFile, "{}: {} heads is not a multiple of {} KV heads", source, n_heads, n_kv_heads);
    if (head_dim % 2 != 0) raise(ErrorCode::InvalidFile, "{}: head dimension {} is odd", source, head_dim);
    if (int(layer_sliding.size()) != n_layers) raise(ErrorCode::InvalidFile, "{}: layer layout mismatch", source);
}

ModelConfig config_from_gguf(const formats::GgufFile& f) {
    const auto arch_str = f.get_string("general.architecture");
    if (!arch_str) raise(ErrorCode::InvalidFile, "{}: no general.architecture (vocabulary-only file?)", f.path());
    ModelConfig c;
    const std::string& a = *arch_str;
    if (a == "llama" || a == "mistral") c.arch = Arch::Llama;
    else if (a == "qwen2") c.arch = Arch::Qwen2;
    else if (a == "qwen3") c.arch = Arch::Qwen3;
    else if (a == "gemma3") c.arch = Arch::Gemma3;
    else raise(ErrorCode::Unsupported, "{}: architecture '{}' is not supported (llama, mistral, qwen2, qwen3, gemma3)",
               f.path(), a);
    auto req_int = [&](const std::string& key) -> int {
        const auto v = f.get_int(a + "." + key);
        if (!v) raise(ErrorCode::InvalidFile, "{}: missing metadata {}.{}", f.path(), a, key);
        if (*v < 0 || *v > (1ll << 30)) raise(ErrorCode::InvalidFile, "{}: {}.{} = {} is out of range", f.path(), a, key, *v);
        return int(*v);
    };
    auto opt_int = [&](const std::string& key, int def) -> int {
        const auto v = f.get_int(a + "." + key);
        if (!v) return def;
        if (*v < 0 || *v > (1ll << 30)) raise(ErrorCode::InvalidFile, "{}: {}.{} = {} is out of range", f.path(), a, key, *v);
        return int(*v);
    };
    c.name = f.get_string("general.name").value_or(a);
    c.n_layers = req_int("block_count");
    c.d_model = req_int("embedding_length");
    c.d_ff = req_int("feed_forward_length");
    c.n_heads = req_int("attention.head_count");
    c.n_kv_heads = opt_int("attention.head_count_kv", c.n_heads);
    c.head_dim = opt_int("attention.key_length", c.n_heads ? c.d_model / c.n_heads : 0);
    c.max_context = req_int("context_length");
    c.rms_eps = float(f.get_float(a + ".attention.layer_norm_rms_epsilon").value_or(1e-5));
    c.rope_theta = float(f.get_float(a + ".rope.freq_base").value_or(10000.0));
    c.rope_theta_local = c.rope_theta;
    const auto* emb = f.find_tensor("token_embd.weight");
    if (!emb || emb->shape.size() != 2) raise(ErrorCode::InvalidFile, "{}: missing 2-D tensor token_embd.weight", f.path());
    c.n_vocab = int(emb->shape[0]);
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    c.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.qk_norm = f.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
    c.layer_sliding.assign(size_t(c.n_layers), false);

    if (const auto type = f.get_string(a + ".rope.scaling.type")) {
        if (*type == "linear") {
            c.rope_scaling = RopeScaling::Linear;
            c.rope_factor = float(f.get_float(a + ".rope.scaling.factor").value_or(1.0));
        } else if (*type != "none") {
            raise(ErrorCode::Unsupported, "{}: rope scaling '{}' is not supported", f.path(), *type);
        }
    }
    // Llama 3.1 GGUF files carry the llama3 scaling as a rope_freqs tensor; use the standard parameters then.
    if (c.arch == Arch::Llama && f.find_tensor("rope_freqs.weight")) {
        c.rope_scaling = RopeScaling::Llama3;
        // llama.cpp writes no rope.scaling.factor for llama3 scaling: the factor is rope_freqs' largest entry
        // (the per-frequency divisors run from 1 for the fastest frequencies up to the factor).
        const formats::GgufTensorInfo* rf = f.find_tensor("rope_freqs.weight");
        float fmax = 0.0f;
        if (rf->dtype == DType::F32 && rf->n_bytes >= 4)
            for (size_t i = 0; i < rf->n_bytes / 4; i++) {
                float v;
                std::memcpy(&v, rf->data + 4 * i, 4);
                fmax = std::max(fmax, v);
            }
        c.rope_factor = float(f.get_float(a + ".rope.scaling.factor").value_or(fmax > 0.0f ? fmax : 8.0));
        c.rope_low_freq_factor = float(f.get_float(a + ".rope.scaling.low_freq_factor").value_or(1.0));
        c.rope_high_freq_factor = float(f.get_float(a + ".rope.scaling.high_freq_factor").value_or(4.0));
        c.rope_original_max_context = opt_int("rope.scaling.original_context_length", 8192);
    }

    switch (c.arch) {
        case Arch::Llama:
            c.rope_neox = false;  // llama GGUF q/k rows are permuted for adjacent-pair rotation
            break;
        case Arch::Qwen2:
        case Arch::Qwen3:
            c.rope_neox = true;
            c.sliding_window = 0;
            break;
        case Arch::Gemma3: {
            c.rope_neox = true;
            c.sandwich_norms = true;
            c.activation = backend::Activation::GeluTanh;
            c.embed_scale = std::sqrt(float(c.d_model));
            c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
            c.rope_theta_local = 10000.0f;
            c.sliding_window = opt_int("attention.sliding_window", 0);
            // Every sixth layer is global; the others use the sliding window.
            for (int i = 0; i < c.n_layers; i++) c.layer_sliding[size_t(i)] = c.sliding_window > 0 && (i + 1) % 6 != 0;
            c.final_softcap = float(f.get_float(a + ".final_logit_softcapping").value_or(0.0));
            c.attn_softcap = float(f.get_float(a + ".attn_logit_softcapping").value_or(0.0));
            break;
        }
    }
    c.validate(f.path());
    return c;
}

}  // namespace osprey::model
