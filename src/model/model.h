// Model: a decoder-only transformer (llama, mistral, qwen2, qwen3, gemma3) on a Backend.
//
// Owns its weights (views into the mapped file on the CPU, device copies elsewhere) and a workspace sized for the
// largest step seen. forward() runs one ragged StepInput through every layer, reading and writing the paged KV
// cache, and returns logits only for the rows asked for. Knows nothing about requests or scheduling.
// Thread affinity: one thread at a time (the engine thread).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "kv/paged_kv_cache.h"
#include "model/model_config.h"
#include "model/step_input.h"

namespace osprey::formats {
class GgufFile;
}

namespace osprey::model {

struct LayerWeights {
    Tensor attn_norm;        // [d]
    Tensor wq, wk, wv, wo;   // [q_dim, d], [kv_dim, d], [kv_dim, d], [d, q_dim]
    Tensor bq, bk, bv;       // optional biases (qwen2)
    Tensor q_norm, k_norm;   // optional per-head RMSNorm weights [head_dim] (qwen3, gemma3)
    Tensor post_attn_norm;   // optional (gemma3)
    Tensor ffn_norm;         // [d]
    Tensor w_gate, w_up;     // [d_ff, d]
    Tensor w_down;           // [d, d_ff]
    Tensor post_ffn_norm;    // optional (gemma3)
};

struct ModelWeights {
    Tensor tok_embd;         // [n_vocab, d]
    Tensor output_norm;      // [d]
    Tensor output;           // [n_vocab, d] (the embedding table when tied)
    std::vector<LayerWeights> layers;
};

// Where weights come from: a name lookup plus the naming scheme its names follow.
enum class WeightNaming { Gguf, HuggingFace };
struct WeightSource {
    WeightNaming naming = WeightNaming::Gguf;
    std::function<std::optional<Tensor>(const std::string&)> find;  // CPU views of the stored tensors
    std::string description;                                          // for error messages
    std::vector<std::string> tensor_names;                            // every stored name (for unused-tensor checks)
};

class Model {
  public:
    // Loads weights through `source` onto the backend. Throws Error(InvalidFile) for missing or mis-shaped tensors and
    // Error(Unsupported) when the backend cannot run a tensor's type.
    Model(const ModelConfig& config, const WeightSource& source, backend::Backend& backend);
    ~Model();

    const ModelConfig& config() const { return config_; }
    backend::Backend& backend() const { return backend_; }
    size_t n_params() const { return n_params_; }
    size_t weight_bytes() const { return weight_bytes_; }

    // One step. Returns logits [in.logit_rows.size(), n_vocab] f32 on the backend's device, valid until the next call.
    // On a backend with op graphs, a decode step (one token per sequence, logits for each in order) of at most
    // kMaxGraphBatch sequences replays a graph captured for its padded batch size and context bucket (captured on
    // first use after one eager run): one launch per step instead of one per op.
    Tensor forward(const StepInput& in, kv::PagedKvCache& kv_cache);

    static constexpr int kMaxGraphBatch = 256;
    // Op graphs on (default, where the backend has them) or off (every step eager, like vLLM's --enforce-eager).
    void set_graphs_enabled(bool on);
    bool graphs_enabled() const { return graphs_enabled_; }
    int n_graphs_captured() const { return n_graphs_captured_; }
    // The batch size a decode step of n sequences is padded to: n itself up to 8, then the next multiple of 8.
    static int graph_batch_size(int n);

  private:
    struct Workspace;
    struct StepTensors;
    struct DecodeGraph;
    void load(const WeightSource& source);
    void reserve(int n_tokens, int n_seqs, int max_blocks, int n_logit_rows);
    Tensor upload_i32(const backend::Buffer& b, const std::vector<int32_t>& v);
    StepTensors upload_step(const StepInput& in);
    void fill_device_tokens(const StepInput& in, const Tensor& ids);
    StepTensors upload_padded_decode(const StepInput& in, int batch, int context_bucket, int block_size);
    void run_layers(const StepTensors& step, kv::PagedKvCache& kv_cache);
    bool is_graph_decode(const StepInput& in) const;
    Tensor forward_decode_graph(const StepInput& in, kv::PagedKvCache& kv_cache);

    ModelConfig config_;
    backend::Backend& backend_;
    ModelWeights w_;
    std::vector<backend::Buffer> owned_;      // converted weights (norms in f32, device copies)
    std::vector<backend::Buffer> rope_freq_;  // [2]: global, sliding; each [head_dim / 2] f32
    size_t n_params_ = 0;
    size_t weight_bytes_ = 0;
    std::unique_ptr<Workspace> ws_;
    bool graphs_enabled_ = true;
    int n_graphs_captured_ = 0;
};

// A WeightSource over a GGUF file (views into its map; the file must outlive the Model).
WeightSource gguf_weight_source(const formats::GgufFile& file);

}  // namespace osprey::model

namespace osprey::formats {
class SafetensorsModel;
}

namespace osprey::model {

// A WeightSource over a Hugging Face folder's safetensors (views into the maps; the files must outlive the Model).
// Accepts the "language_model." prefix of multimodal checkpoints (gemma3).
WeightSource safetensors_weight_source(const formats::SafetensorsModel& weights);

// ModelConfig from a Hugging Face folder's config.json. Throws Error(InvalidFile/Unsupported).
ModelConfig config_from_hf_folder(const std::string& dir);

}  // namespace osprey::model
