#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/half.h"
#include "formats/gguf.h"

namespace osprey::model {

namespace {

// Names of one layer's tensors in each naming scheme. `{}` is the layer index.
struct LayerNames {
    const char* attn_norm;
    const char* wq; const char* wk; const char* wv; const char* wo;
    const char* bq; const char* bk; const char* bv;
    const char* q_norm; const char* k_norm;
    const char* post_attn_norm;
    const char* ffn_norm;
    const char* w_gate; const char* w_up; const char* w_down;
    const char* post_ffn_norm;
};

constexpr LayerNames kGgufLayer = {
    "blk.{}.attn_norm.weight",
    "blk.{}.attn_q.weight", "blk.{}.attn_k.weight", "blk.{}.attn_v.weight", "blk.{}.attn_output.weight",
    "blk.{}.attn_q.bias", "blk.{}.attn_k.bias", "blk.{}.attn_v.bias",
    "blk.{}.attn_q_norm.weight", "blk.{}.attn_k_norm.weight",
    "blk.{}.post_attention_norm.weight",
    "blk.{}.ffn_norm.weight",
    "blk.{}.ffn_gate.weight", "blk.{}.ffn_up.weight", "blk.{}.ffn_down.weight",
    "blk.{}.post_ffw_norm.weight",
};

constexpr LayerNames kHfLayer = {
    "model.layers.{}.input_layernorm.weight",
    "model.layers.{}.self_attn.q_proj.weight", "model.layers.{}.self_attn.k_proj.weight",
    "model.layers.{}.self_attn.v_proj.weight", "model.layers.{}.self_attn.o_proj.weight",
    "model.layers.{}.self_attn.q_proj.bias", "model.layers.{}.self_attn.k_proj.bias",
    "model.layers.{}.self_attn.v_proj.bias",
    "model.layers.{}.self_attn.q_norm.weight", "model.layers.{}.self_attn.k_norm.weight",
    "model.layers.{}.post_attention_layernorm.weight",
    "model.layers.{}.post_attention_layernorm.weight",  // llama-style: the norm before the FFN
    "model.layers.{}.mlp.gate_proj.weight", "model.layers.{}.mlp.up_proj.weight", "model.layers.{}.mlp.down_proj.weight",
    "model.layers.{}.post_feedforward_layernorm.weight",
};
constexpr const char* kHfGemmaFfnNorm = "model.layers.{}.pre_feedforward_layernorm.weight";

struct GlobalNames {
    const char* tok_embd;
    const char* output_norm;
    const char* output;
};
constexpr GlobalNames kGgufGlobal = {"token_embd.weight", "output_norm.weight", "output.weight"};
constexpr GlobalNames kHfGlobal = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};

std::string layer_name(const char* pattern, int layer) { return fmt::format(fmt::runtime(pattern), layer); }

}  // namespace

// One step's inputs on the device.
struct Model::StepTensors {
    backend::AttentionBatch batch;
    Tensor ids;         // [n_tokens]
    Tensor logit_rows;  // [n_logits]
    int n_logits = 0;
};

// A captured decode step: valid while the workspace, the backend's scratch and the KV pool stay where they were.
struct Model::DecodeGraph {
    std::unique_ptr<backend::OpGraph> graph;
    uint64_t ws_epoch = 0;
    const void* kv_pool = nullptr;
};

struct Model::Workspace {
    int cap_tokens = 0, cap_seqs = 0, cap_blocks = 0, cap_logits = 0;
    uint64_t epoch = 0;  // bumped whenever a buffer moves (captured graphs hold the old addresses)
    backend::Buffer x, h, q, k, v, attn, o, gate, up;  // activations
    backend::Buffer logits_in, logits;
    backend::Buffer ids, positions, slots, query_start, seq_lens, block_tables, logit_rows;  // i32 metadata
    backend::Buffer device_token_pos, device_token_row;  // StepInput's device tokens [<= cap_tokens]
    std::vector<int32_t> host_tables;
    std::vector<int32_t> host_ids, host_positions, host_slots, host_starts, host_lens, host_rows;  // padded decode
    std::map<std::pair<int, int>, DecodeGraph> graphs;  // by (padded batch, context bucket)
};

Model::Model(const ModelConfig& config, const WeightSource& source, backend::Backend& backend)
    : config_(config), backend_(backend), ws_(std::make_unique<Workspace>()) {
    config_.validate(source.description);
    load(source);
    for (bool sliding : {false, true}) {
        const std::vector<float> inv = config_.rope_inv_freq(sliding);
        backend::Buffer b = backend_.alloc(inv.size() * sizeof(float));
        backend_.copy_from_host(b.data(), inv.data(), inv.size() * sizeof(float));
        rope_freq_.push_back(std::move(b));
    }
}

Model::~Model() = default;

void Model::load(const WeightSource& src) {
    const ModelConfig& c = config_;
    const bool hf = src.naming == WeightNaming::HuggingFace;
    // Gemma's HF checkpoints store norm weights as w where the norm multiplies by (1 + w); GGUF stores 1 + w.
    const float norm_shift = (hf && c.arch == Arch::Gemma3) ? 1.0f : 0.0f;

    auto find = [&](const std::string& name, bool required) -> std::optional<Tensor> {
        std::optional<Tensor> t = src.find(name);
        if (!t && required) raise(ErrorCode::InvalidFile, "{}: missing tensor '{}'", src.description, name);
        return t;
    };
    auto check_shape = [&](const Tensor& t, const std::string& name, std::initializer_list<int64_t> want) {
        Tensor w(nullptr, t.dtype, want);
        if (t.numel() != w.numel() || t.cols() != w.cols())
            raise(ErrorCode::InvalidFile, "{}: tensor '{}' has shape {} but the model needs {}", src.description, name,
                  t.shape_str(), w.shape_str());
    };
    // Matrices stay in their stored type (views on the CPU, copies on a device).
    auto stored_matrix = [&](const std::string& name, int64_t rows, int64_t cols) -> Tensor {
        Tensor t = *find(name, true);
        check_shape(t, name, {rows, cols});
        if (!backend_.supports_matmul(t.dtype))
            raise(ErrorCode::Unsupported, "{}: tensor '{}' of type {} has no matrix kernel on backend {}",
                  src.description, name, dtype_name(t.dtype), backend_.name());
        t.n_dims = 2;
        t.shape = {rows, cols, 1, 1};
        n_params_ += size_t(t.numel());
        weight_bytes_ += t.n_bytes();
        return t;
    };
    // On a device, the matrices of one group (q/k/v, gate/up: products of the same input) are copied back to back
    // into one allocation when they share a type, so that the backend may run them as one product.
    struct MatrixSpec {
        std::string name;
        int64_t rows, cols;
    };
    auto placed_group = [&](const std::vector<MatrixSpec>& specs) -> std::vector<Tensor> {
        std::vector<Tensor> host;
        for (const MatrixSpec& s : specs) host.push_back(stored_matrix(s.name, s.rows, s.cols));
        if (backend_.device() == Device::Cpu) return host;
        bool one_type = true;
        size_t total = 0;
        for (const Tensor& t : host) one_type = one_type && t.dtype == host[0].dtype, total += t.n_bytes();
        std::vector<Tensor> out;
        if (!one_type) {
            for (const Tensor& t : host) {
                backend::Buffer b = backend_.alloc(t.n_bytes());
                backend_.copy_from_host(b.data(), t.data, t.n_bytes());
                out.push_back(b.view(t.dtype, {t.rows(), t.cols()}));
                owned_.push_back(std::move(b));
            }
            return out;
        }
        backend::Buffer b = backend_.alloc(total);
        size_t offset = 0;
        for (const Tensor& t : host) {
            char* p = static_cast<char*>(b.data()) + offset;
            backend_.copy_from_host(p, t.data, t.n_bytes());
            out.emplace_back(p, t.dtype, std::initializer_list<int64_t>{t.rows(), t.cols()}, backend_.device());
            offset += t.n_bytes();
        }
        owned_.push_back(std::move(b));
        return out;
    };
    // Matrices of matmuls are offered to the backend for a layout of its own (prepare_matrix); the embedding table
    // only when it is also the output head.
    auto matrix_group = [&](const std::vector<MatrixSpec>& specs, bool prepare = true) -> std::vector<Tensor> {
        std::vector<Tensor> ts = placed_group(specs);
        if (prepare)
            for (const Tensor& t : ts) backend_.prepare_matrix(t);
        return ts;
    };
    auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, bool prepare = true) -> Tensor {
        return matrix_group({{name, rows, cols}}, prepare)[0];
    };
    // Vectors (norms, biases) are converted to f32.
    auto vector = [&](const std::string& name, int64_t n, bool required, float shift) -> Tensor {
        std::optional<Tensor> t = find(name, required);
        if (!t) return Tensor();
        check_shape(*t, name, {n});
        std::vector<float> host(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; i++) {
            float v;
            switch (t->dtype) {
                case DType::F32: v = t->as<float>()[i]; break;
                case DType::F16: v = fp16_to_fp32(t->as<uint16_t>()[i]); break;
                case DType::BF16: v = bf16_to_fp32(t->as<uint16_t>()[i]); break;
                default:
                    raise(ErrorCode::Unsupported, "{}: tensor '{}' has type {}; vectors must be f32, f16 or bf16",
                          src.description, name, dtype_name(t->dtype));
            }
            host[size_t(i)] = v + shift;
        }
        n_params_ += size_t(n);
        weight_bytes_ += size_t(n) * 4;
        backend::Buffer b = backend_.alloc(size_t(n) * 4);
        backend_.copy_from_host(b.data(), host.data(), size_t(n) * 4);
        Tensor d = b.view(DType::F32, {n});
        owned_.push_back(std::move(b));
        return d;
    };

    const GlobalNames& g = hf ? kHfGlobal : kGgufGlobal;
    const LayerNames& ln = hf ? kHfLayer : kGgufLayer;
    {
        Tensor e = *find(g.tok_embd, true);
        check_shape(e, g.tok_embd, {c.n_vocab, c.d_model});
        if (!backend_.supports_embedding(e.dtype))
            raise(ErrorCode::Unsupported, "{}: embedding type {} has no kernel on backend {}", src.description,
                  dtype_name(e.dtype), backend_.name());
    }
    w_.tok_embd = matrix(g.tok_embd, c.n_vocab, c.d_model, /*prepare=*/false);
    w_.output_norm = vector(g.output_norm, c.d_model, true, norm_shift);
    if (c.tied_embeddings || !src.find(g.output)) {
        w_.output = w_.tok_embd;
        backend_.prepare_matrix(w_.output);
    } else {
        w_.output = matrix(g.output, c.n_vocab, c.d_model);
    }
    w_.layers.resize(size_t(c.n_layers));
    for (int i = 0; i < c.n_layers; i++) {
        LayerWeights& L = w_.layers[size_t(i)];
        auto name = [&](const char* p) { return layer_name(p, i); };
        L.attn_norm = vector(name(ln.attn_norm), c.d_model, true, norm_shift);
        {
            const std::vector<Tensor> qkv = matrix_group({{name(ln.wq), c.q_dim(), c.d_model},
                                                          {name(ln.wk), c.kv_dim(), c.d_model},
                                                          {name(ln.wv), c.kv_dim(), c.d_model}});
            L.wq = qkv[0], L.wk = qkv[1], L.wv = qkv[2];
        }
        L.wo = matrix(name(ln.wo), c.d_model, c.q_dim());
        if (c.qkv_bias) {
            L.bq = vector(name(ln.bq), c.q_dim(), true, 0.0f);
            L.bk = vector(name(ln.bk), c.kv_dim(), true, 0.0f);
            L.bv = vector(name(ln.bv), c.kv_dim(), true, 0.0f);
        }
        if (c.qk_norm) {
            L.q_norm = vector(name(ln.q_norm), c.head_dim, true, norm_shift);
            L.k_norm = vector(name(ln.k_norm), c.head_dim, true, norm_shift);
        }
        if (c.sandwich_norms) {
            L.post_attn_norm = vector(name(ln.post_attn_norm), c.d_model, true, norm_shift);
            L.ffn_norm = vector(name(hf ? kHfGemmaFfnNorm : ln.ffn_norm), c.d_model, true, norm_shift);
            L.post_ffn_norm = vector(name(ln.post_ffn_norm), c.d_model, true, norm_shift);
        } else {
            L.ffn_norm = vector(name(ln.ffn_norm), c.d_model, true, norm_shift);
        }
        {
            const std::vector<Tensor> gu = matrix_group({{name(ln.w_gate), c.d_ff, c.d_model},
                                                         {name(ln.w_up), c.d_ff, c.d_model}});
            L.w_gate = gu[0], L.w_up = gu[1];
        }
        L.w_down = matrix(name(ln.w_down), c.d_model, c.d_ff);
    }
}

void Model::reserve(int n_tokens, int n_seqs, int max_blocks, int n_logit_rows) {
    Workspace& ws = *ws_;
    const ModelConfig& c = config_;
    auto f32 = [&](int64_t n) { return backend_.alloc(size_t(n) * 4); };
    if (n_tokens > ws.cap_tokens) {
        const int n = std::max(n_tokens, 16);
        ws.x = f32(int64_t(n) * c.d_model);
        ws.h = f32(int64_t(n) * c.d_model);
        ws.o = f32(int64_t(n) * c.d_model);
        ws.q = f32(int64_t(n) * c.q_dim());
        ws.attn = f32(int64_t(n) * c.q_dim());
        ws.k = f32(int64_t(n) * c.kv_dim());
        ws.v = f32(int64_t(n) * c.kv_dim());
        ws.gate = f32(int64_t(n) * c.d_ff);
        ws.up = f32(int64_t(n) * c.d_ff);
        ws.ids = f32(n);
        ws.device_token_pos = f32(n);
        ws.device_token_row = f32(n);
        ws.positions = f32(n);
        ws.slots = f32(n);
        ws.cap_tokens = n;
        ws.epoch++;
    }
    if (n_seqs > ws.cap_seqs || max_blocks > ws.cap_blocks) {
        ws.cap_seqs = std::max(n_seqs, ws.cap_seqs);
        ws.cap_blocks = std::max(max_blocks, ws.cap_blocks);
        ws.query_start = f32(ws.cap_seqs + 1);
        ws.seq_lens = f32(ws.cap_seqs);
        ws.block_tables = f32(int64_t(ws.cap_seqs) * ws.cap_blocks);
        ws.epoch++;
    }
    if (n_logit_rows > ws.cap_logits) {
        ws.logits_in = f32(int64_t(n_logit_rows) * c.d_model);
        ws.logits = f32(int64_t(n_logit_rows) * c.n_vocab);
        ws.logit_rows = f32(n_logit_rows);
        ws.cap_logits = n_logit_rows;
        ws.epoch++;
    }
}

// The step's placeholder tokens replaced by ids the previous step drew on the device.
void Model::fill_device_tokens(const StepInput& in, const Tensor& ids) {
    if (in.device_token_pos.empty()) return;
    OSP_CHECK(in.device_token_pos.size() == in.device_token_row.size() && in.device_tokens.numel() > 0,
              "device tokens: {} positions, {} rows", in.device_token_pos.size(), in.device_token_row.size());
    Workspace& ws = *ws_;
    const Tensor pos = upload_i32(ws.device_token_pos, in.device_token_pos);
    const Tensor rows = upload_i32(ws.device_token_row, in.device_token_row);
    backend_.copy_indexed_i32(ids, pos, in.device_tokens, rows);
}

// v uploaded into b, as an I32 tensor of v.size() (an empty tensor for an empty v).
Tensor Model::upload_i32(const backend::Buffer& b, const std::vector<int32_t>& v) {
    if (v.empty()) return Tensor();
    backend_.copy_from_host(b.data(), v.data(), v.size() * 4);
    return b.view(DType::I32, {int64_t(v.size())});
}

Model::StepTensors Model::upload_step(const StepInput& in) {
    Workspace& ws = *ws_;
    const int n_tokens = in.n_tokens();
    const int n_seqs = in.n_seqs();
    const int n_logits = int(in.logit_rows.size());
    int max_blocks = 1;
    for (const auto& t : in.block_tables) max_blocks = std::max(max_blocks, int(t.size()));
    reserve(n_tokens, n_seqs, max_blocks, n_logits);

    StepTensors st;
    backend::AttentionBatch& batch = st.batch;
    batch.n_seqs = n_seqs;
    batch.n_tokens = n_tokens;
    batch.max_blocks_per_seq = max_blocks;
    batch.max_seq_len = n_seqs ? *std::max_element(in.seq_lens.begin(), in.seq_lens.end()) : 0;
    batch.query_start = upload_i32(ws.query_start, in.query_start);
    batch.seq_lens = upload_i32(ws.seq_lens, in.seq_lens);
    batch.positions = upload_i32(ws.positions, in.positions);
    batch.slot_mapping = upload_i32(ws.slots, in.slot_mapping);
    ws.host_tables.assign(size_t(n_seqs) * size_t(max_blocks), 0);
    for (int s = 0; s < n_seqs; s++)
        std::copy(in.block_tables[size_t(s)].begin(), in.block_tables[size_t(s)].end(),
                  ws.host_tables.begin() + long(s) * max_blocks);
    backend_.copy_from_host(ws.block_tables.data(), ws.host_tables.data(), ws.host_tables.size() * 4);
    batch.block_tables = ws.block_tables.view(DType::I32, {n_seqs, max_blocks});
    st.ids = upload_i32(ws.ids, in.tokens);
    fill_device_tokens(in, st.ids);
    st.logit_rows = upload_i32(ws.logit_rows, in.logit_rows);
    st.n_logits = n_logits;
    return st;
}

// A decode step padded to `batch` sequences: the extra ones decode token 0 at position 0 of block 0 (read only:
// their key/value write is skipped, slot -1) and their logits are ignored. The block table is `context_bucket /
// block_size` wide, and the attention's length hint is the bucket, so every launch shape depends on
// (batch, context_bucket) alone.
Model::StepTensors Model::upload_padded_decode(const StepInput& in, int batch, int context_bucket, int block_size) {
    Workspace& ws = *ws_;
    const int n = in.n_seqs();
    const int stride = (context_bucket + block_size - 1) / block_size;
    reserve(batch, batch, stride, batch);

    auto padded = [&](std::vector<int32_t>& host, const std::vector<int32_t>& src, int32_t fill) -> std::vector<int32_t>& {
        host.assign(size_t(batch), fill);
        std::copy(src.begin(), src.begin() + n, host.begin());
        return host;
    };
    StepTensors st;
    backend::AttentionBatch& b = st.batch;
    b.n_seqs = batch;
    b.n_tokens = batch;
    b.max_blocks_per_seq = stride;
    b.max_seq_len = context_bucket;
    ws.host_starts.resize(size_t(batch) + 1);
    ws.host_rows.resize(size_t(batch));
    for (int i = 0; i <= batch; i++) ws.host_starts[size_t(i)] = i;
    for (int i = 0; i < batch; i++) ws.host_rows[size_t(i)] = i;
    b.query_start = upload_i32(ws.query_start, ws.host_starts);
    b.seq_lens = upload_i32(ws.seq_lens, padded(ws.host_lens, in.seq_lens, 1));
    b.positions = upload_i32(ws.positions, padded(ws.host_positions, in.positions, 0));
    b.slot_mapping = upload_i32(ws.slots, padded(ws.host_slots, in.slot_mapping, -1));
    ws.host_tables.assign(size_t(batch) * size_t(stride), 0);
    for (int s = 0; s < n; s++)
        std::copy(in.block_tables[size_t(s)].begin(), in.block_tables[size_t(s)].end(),
                  ws.host_tables.begin() + long(s) * stride);
    backend_.copy_from_host(ws.block_tables.data(), ws.host_tables.data(), ws.host_tables.size() * 4);
    b.block_tables = ws.block_tables.view(DType::I32, {batch, stride});
    st.ids = upload_i32(ws.ids, padded(ws.host_ids, in.tokens, 0));
    fill_device_tokens(in, st.ids);  // before the graph runs, in stream order
    st.logit_rows = upload_i32(ws.logit_rows, ws.host_rows);
    st.n_logits = batch;
    return st;
}

int Model::graph_batch_size(int n) { return n <= 8 ? n : (n + 7) / 8 * 8; }

void Model::set_graphs_enabled(bool on) {
    graphs_enabled_ = on;
    if (!on) ws_->graphs.clear();
}

bool Model::is_graph_decode(const StepInput& in) const {
    const int n = in.n_seqs();
    if (n < 1 || n > kMaxGraphBatch || in.n_tokens() != n || int(in.logit_rows.size()) != n) return false;
    for (int i = 0; i < n; i++)
        if (in.logit_rows[size_t(i)] != i) return false;
    return true;
}

Tensor Model::forward(const StepInput& in, kv::PagedKvCache& kv_cache) {
    const int T = in.n_tokens();
    OSP_CHECK(T > 0 && int(in.positions.size()) == T && int(in.slot_mapping.size()) == T);
    if (graphs_enabled_ && backend_.supports_graphs() && is_graph_decode(in)) return forward_decode_graph(in, kv_cache);
    const StepTensors step = upload_step(in);
    run_layers(step, kv_cache);
    if (step.n_logits == 0) return Tensor(ws_->logits.data(), DType::F32, {0, config_.n_vocab}, backend_.device());
    return ws_->logits.view(DType::F32, {step.n_logits, config_.n_vocab});
}

Tensor Model::forward_decode_graph(const StepInput& in, kv::PagedKvCache& kv_cache) {
    Workspace& ws = *ws_;
    const int n = in.n_seqs();
    const int batch = graph_batch_size(n);
    int bucket = 128;  // context bucket: the next power of two >= the longest sequence
    for (int len : in.seq_lens) while (bucket < len) bucket *= 2;
    const StepTensors step = upload_padded_decode(in, batch, bucket, kv_cache.block_size());
    const void* pool = kv_cache.layer(0).k.data;
    DecodeGraph& g = ws.graphs[{batch, bucket}];
    if (g.graph && g.graph->valid() && g.ws_epoch == ws.epoch && g.kv_pool == pool) {
        g.graph->launch();
    } else {
        // Run once eagerly (this step's result; sizes every scratch area), then record the same ops for next time.
        run_layers(step, kv_cache);
        g.graph.reset();
        backend_.begin_capture();
        try {
            run_layers(step, kv_cache);
        } catch (...) {
            backend_.abort_capture();
            throw;
        }
        g.graph = backend_.end_capture();
        g.ws_epoch = ws.epoch;
        g.kv_pool = pool;
        n_graphs_captured_++;
    }
    return ws.logits.view(DType::F32, {n, config_.n_vocab});
}

void Model::run_layers(const StepTensors& step, kv::PagedKvCache& kv_cache) {
    const ModelConfig& c = config_;
    const backend::AttentionBatch& batch = step.batch;
    const int T = batch.n_tokens;
    const int R = step.n_logits;
    backend::Backend& be = backend_;
    Workspace& ws = *ws_;

    // Activations, all [T, *] f32.
    Tensor x = ws.x.view(DType::F32, {T, c.d_model});
    Tensor h = ws.h.view(DType::F32, {T, c.d_model});
    Tensor o = ws.o.view(DType::F32, {T, c.d_model});
    Tensor q = ws.q.view(DType::F32, {T, c.q_dim()});
    Tensor attn = ws.attn.view(DType::F32, {T, c.q_dim()});
    Tensor k = ws.k.view(DType::F32, {T, c.kv_dim()});
    Tensor v = ws.v.view(DType::F32, {T, c.kv_dim()});
    Tensor gate = ws.gate.view(DType::F32, {T, c.d_ff});
    Tensor up = ws.up.view(DType::F32, {T, c.d_ff});

    be.embedding(x, w_.tok_embd, step.ids, c.embed_scale);

    backend::RopeParams rope_q{c.n_heads, c.head_dim, c.head_dim, c.rope_neox};
    backend::RopeParams rope_k{c.n_kv_heads, c.head_dim, c.head_dim, c.rope_neox};
    backend::AttentionParams ap;
    ap.n_heads = c.n_heads;
    ap.n_kv_heads = c.n_kv_heads;
    ap.head_dim = c.head_dim;
    ap.scale = c.attn_scale > 0 ? c.attn_scale : 1.0f / std::sqrt(float(c.head_dim));
    ap.softcap = c.attn_softcap;

    for (int l = 0; l < c.n_layers; l++) {
        const LayerWeights& L = w_.layers[size_t(l)];
        const bool sliding = c.layer_sliding[size_t(l)];

        // Attention block (h = attn_norm(x) was made by the previous layer's residual step).
        if (l == 0) be.rms_norm(h, x, L.attn_norm, c.rms_eps);
        {
            Tensor outs[3] = {q, k, v};
            const Tensor ws3[3] = {L.wq, L.wk, L.wv};
            be.matmul_multi(outs, h, ws3);
        }
        if (c.qkv_bias) {
            be.add_bias(q, L.bq);
            be.add_bias(k, L.bk);
            be.add_bias(v, L.bv);
        }
        if (c.qk_norm) {
            be.rms_norm(q, q, L.q_norm, c.rms_eps);  // per head: rows of head_dim
            be.rms_norm(k, k, L.k_norm, c.rms_eps);
        }
        const Tensor inv_freq = rope_freq_[sliding ? 1 : 0].view(DType::F32, {c.head_dim / 2});
        const backend::KvLayerView kv = kv_cache.layer(l);
        be.rope_kv_write(q, k, v, inv_freq, rope_q, rope_k, kv, batch);
        ap.window = sliding ? c.sliding_window : 0;
        be.paged_attention(attn, q, kv, batch, ap);
        be.matmul(o, attn, L.wo);
        if (c.sandwich_norms) be.rms_norm(o, o, L.post_attn_norm, c.rms_eps);
        be.add_rms_norm(x, o, h, L.ffn_norm, c.rms_eps);

        // Feed-forward block.
        be.gated_matmul(gate, up, h, L.w_gate, L.w_up, c.activation);
        be.matmul(o, gate, L.w_down);
        if (c.sandwich_norms) be.rms_norm(o, o, L.post_ffn_norm, c.rms_eps);
        if (l + 1 < c.n_layers) be.add_rms_norm(x, o, h, w_.layers[size_t(l + 1)].attn_norm, c.rms_eps);
        else be.add(x, x, o);
    }

    if (R == 0) return;
    Tensor xr = ws.logits_in.view(DType::F32, {R, c.d_model});
    be.gather_rows(xr, x, step.logit_rows);
    be.rms_norm(xr, xr, w_.output_norm, c.rms_eps);
    Tensor logits = ws.logits.view(DType::F32, {R, c.n_vocab});
    be.matmul(logits, xr, w_.output);
    if (c.final_softcap > 0) be.scale(logits, 1.0f, c.final_softcap);
}

WeightSource gguf_weight_source(const formats::GgufFile& file) {
    WeightSource s;
    s.naming = WeightNaming::Gguf;
    s.description = file.path();
    for (const auto& t : file.tensors()) s.tensor_names.push_back(t.name);
    s.find = [&file](const std::string& name) -> std::optional<Tensor> {
        const formats::GgufTensorInfo* t = file.find_tensor(name);
        if (!t) return std::nullopt;
        return t->view();
    };
    return s;
}

}  // namespace osprey::model
