// Backend: the device interface every compute backend (CPU, CUDA) implements.
//
// Contract
// - Buffers are device allocations owned by a Buffer (RAII). Tensors are views into them.
// - Ops put outputs first, then inputs, then scalars. They may run asynchronously on the backend's stream;
//   host code sees results only after synchronize() or a copy to the host.
// - Activations are F32 on the CPU backend; weights may be any dtype that supports_matmul() accepts.
// - Ops never throw on the hot path: shapes and dtypes are validated at model load (supports_*) and at admission.
// - Backends know nothing about models: they see ops, tensors and an AttentionBatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace osprey::backend {

class Backend;

// An owning device allocation.
class Buffer {
  public:
    Buffer() = default;
    Buffer(Backend* owner, void* data, size_t n_bytes) : owner_(owner), data_(data), n_bytes_(n_bytes) {}
    ~Buffer() { release(); }
    Buffer(Buffer&& o) noexcept { *this = std::move(o); }
    Buffer& operator=(Buffer&& o) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;

    void* data() const { return data_; }
    size_t n_bytes() const { return n_bytes_; }
    Tensor view(DType dtype, std::initializer_list<int64_t> shape) const;

  private:
    void release();
    Backend* owner_ = nullptr;
    void* data_ = nullptr;
    size_t n_bytes_ = 0;
};

// Per-step attention metadata, built once per step and read by every layer (FlashInfer's plan/run split).
// All tensors are I32 on the backend's device. The flat token batch holds n_seqs sequences back to back;
// sequence s owns token rows [query_start[s], query_start[s+1]) whose positions are the last
// (query_start[s+1] - query_start[s]) positions of its context of seq_lens[s] tokens.
struct AttentionBatch {
    int n_seqs = 0;
    int n_tokens = 0;
    int max_blocks_per_seq = 0;  // columns of block_tables
    int max_seq_len = 0;         // max of seq_lens (host-side hint for kernel choice)
    Tensor query_start;          // [n_seqs + 1]
    Tensor seq_lens;             // [n_seqs]
    Tensor block_tables;         // [n_seqs, max_blocks_per_seq]: physical block ids
    Tensor positions;            // [n_tokens]: position of each token in its sequence
    Tensor slot_mapping;         // [n_tokens]: block_id * block_size + offset where the token's K/V are written
};

// One layer's paged KV storage: k and v are [n_blocks, block_size, n_kv_heads, head_dim] (F32 or F16).
struct KvLayerView {
    Tensor k;
    Tensor v;
    int block_size = 16;
};

struct AttentionParams {
    int n_heads = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    float scale = 1.0f;      // applied to q·k
    int window = 0;          // sliding window in tokens (key j visible to query at p iff p - window < j <= p); 0 = none
    float softcap = 0.0f;    // tanh soft-capping of scores; 0 = none
};

struct RopeParams {
    int n_heads = 0;
    int head_dim = 0;
    int rotary_dim = 0;      // leading dims of each head that rotate (== head_dim for all supported models)
    bool neox = true;        // true: rotate halves (HF rotate_half); false: rotate adjacent pairs (GGUF llama)
};

enum class Activation { Silu, GeluTanh };

// A recorded sequence of ops, replayed on the same buffers with the same shapes (a CUDA graph): one launch instead
// of one per op. Valid while the backend's internal scratch areas stay where they were at capture.
class OpGraph {
  public:
    virtual ~OpGraph() = default;
    virtual void launch() = 0;
    // False once a scratch area the recorded ops use has been reallocated: capture again.
    virtual bool valid() const = 0;
};

class Backend {
  public:
    virtual ~Backend() = default;

    virtual std::string name() const = 0;       // "cpu (avx512, 2 threads)"
    virtual Device device() const = 0;

    // ---- memory ----
    virtual Buffer alloc(size_t n_bytes) = 0;
    virtual void free_raw(void* data, size_t n_bytes) = 0;  // called by Buffer
    virtual void copy_from_host(void* dst, const void* src, size_t n_bytes) = 0;
    virtual void copy_to_host(void* dst, const void* src, size_t n_bytes) = 0;
    virtual void copy(void* dst, const void* src, size_t n_bytes) = 0;  // device to device
    virtual void synchronize() = 0;
    // Device memory (free, total) in bytes for a GPU backend; {0, 0} for host memory (the CPU backend).
    virtual std::pair<size_t, size_t> device_memory() const { return {0, 0}; }
    // Bytes this backend holds through alloc() now (weights, workspaces, KV pool).
    virtual size_t allocated_bytes() const { return 0; }
    // A device-to-host copy that does not wait: begin_readback enqueues the copy of n_bytes at src (in stream order,
    // after the ops launched so far) and returns a ticket; finish_readback(ticket, dst) waits for that copy alone
    // (not for ops launched after it) and writes the bytes to dst. Tickets are finished in the order they were
    // begun. The default copies at once (a backend whose ops run synchronously).
    virtual uint64_t begin_readback(const void* src, size_t n_bytes);
    virtual void finish_readback(uint64_t ticket, void* dst);

    // ---- op graphs ----
    // Between begin_capture() and end_capture(), ops are recorded into the returned graph instead of running; the
    // caller must not copy to or from the host meanwhile, and must have run the same ops once before (so scratch
    // areas already have their size). Backends without graphs answer false and throw Error(Unsupported).
    virtual bool supports_graphs() const { return false; }
    virtual void begin_capture();
    virtual std::unique_ptr<OpGraph> end_capture();
    // Drops an unfinished capture after an error (nothing to do when none is open).
    virtual void abort_capture() {}

    // ---- capabilities (checked at model load; no silent fallback) ----
    virtual bool supports_matmul(DType weight_dtype) const = 0;
    virtual bool supports_embedding(DType table_dtype) const = 0;
    virtual bool supports_kv_dtype(DType kv_dtype) const = 0;

    // ---- weight preparation ----
    // w is a weight matrix that matmul will read for the model's lifetime (its data stays valid and unchanged).
    // A backend may keep a private copy in a layout of its own (the CPU backend: panels of 16 rows for F16, BF16
    // and Q8_0); results never depend on whether it was prepared beyond summation order. Default: nothing.
    virtual void prepare_matrix(const Tensor& w) { (void)w; }

    // ---- ops ----
    // out[t, :] = table[ids[t], :] * scale                         out [T, d] f32; table [V, d]; ids i32 [T]
    virtual void embedding(Tensor out, const Tensor& table, const Tensor& ids, float scale) = 0;
    // out[m, n] = sum_k x[m, k] * w[n, k]                          out [M, N] f32; x [M, K] f32; w [N, K]
    // Each output element's arithmetic depends only on its own row of x and w (batch-invariant).
    virtual void matmul(Tensor out, const Tensor& x, const Tensor& w) = 0;
    // outs[i] = x . ws[i]^T for every i (at most 4), each exactly as matmul computes it. One call lets a backend share
    // work on x across weights that read it (q/k/v, gate/up); the default runs matmul per weight.
    virtual void matmul_multi(std::span<Tensor> outs, const Tensor& x, std::span<const Tensor> ws) {
        for (size_t i = 0; i < ws.size(); i++) matmul(outs[i], x, ws[i]);
    }
    // The gated feed-forward input: gate = act(x . w_gate^T) * (x . w_up^T); up [M, F] is scratch the backend may
    // use (its contents afterwards are unspecified). Each product exactly as matmul, the activation as
    // gated_activation computes them.
    virtual void gated_matmul(Tensor gate, Tensor up, const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                              Activation act) {
        Tensor outs[2] = {gate, up};
        const Tensor ws[2] = {w_gate, w_up};
        matmul_multi(outs, x, ws);
        gated_activation(gate, gate, up, act);
    }
    // x[m, n] += bias[n]                                            x [M, N] f32; bias [N] f32
    virtual void add_bias(Tensor x, const Tensor& bias) = 0;
    // out = a + b (elementwise, same shape, f32); out may alias a or b
    virtual void add(Tensor out, const Tensor& a, const Tensor& b) = 0;
    // out[r, :] = x[r, :] / rms(x[r, :]) * w      rows of length w.cols(); x viewed as [R, w.cols()]; out may alias x
    virtual void rms_norm(Tensor out, const Tensor& x, const Tensor& w, float eps) = 0;
    // The residual step between blocks, fused: x += delta, then out = rms_norm(x) * w (x, delta, out [R, d]).
    virtual void add_rms_norm(Tensor x, const Tensor& delta, Tensor out, const Tensor& w, float eps) {
        add(x, x, delta);
        rms_norm(out, x, w, eps);
    }
    // out = act(gate) * up                                          [T, F] f32; out may alias gate
    virtual void gated_activation(Tensor out, const Tensor& gate, const Tensor& up, Activation act) = 0;
    // Rotate x in place: x [T, n_heads * head_dim] f32; positions i32 [T]; inv_freq f32 [rotary_dim / 2]
    virtual void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, const RopeParams& p) = 0;
    // Write k, v [T, n_kv_heads * head_dim] (f32) into the layer's pool at batch.slot_mapping.
    virtual void kv_write(KvLayerView kv, const Tensor& k, const Tensor& v, const AttentionBatch& batch) = 0;
    // RoPE on q and k (in place, their own RopeParams), then k and v written into the pool: one fused step.
    virtual void rope_kv_write(Tensor q, Tensor k, const Tensor& v, const Tensor& inv_freq, const RopeParams& rope_q,
                               const RopeParams& rope_k, KvLayerView kv, const AttentionBatch& batch) {
        rope(q, batch.positions, inv_freq, rope_q);
        rope(k, batch.positions, inv_freq, rope_k);
        kv_write(kv, k, v, batch);
    }
    // Causal paged grouped-query attention over each sequence's context (cached tokens plus this step's).
    // out, q [T, n_heads * head_dim] f32. The step's K/V must already be written with kv_write.
    virtual void paged_attention(Tensor out, const Tensor& q, KvLayerView kv, const AttentionBatch& batch,
                                 const AttentionParams& p) = 0;
    // out[i, :] = x[rows[i], :]                                     out [R, d]; x [T, d] f32; rows i32 [R]
    virtual void gather_rows(Tensor out, const Tensor& x, const Tensor& rows) = 0;
    // dst[dst_index[k]] = src[src_index[k]] for every k (token ids drawn by the previous step fed to the next one
    // without a trip through the host).        dst i32 [N]; dst_index i32 [K]; src i32 [M]; src_index i32 [K]
    // The default goes through host copies; a device backend overrides it.
    virtual void copy_indexed_i32(Tensor dst, const Tensor& dst_index, const Tensor& src, const Tensor& src_index);
    // ids[r] = the first index of the largest value of logits row r (greedy decoding on the device, so only the
    // ids travel back)                                              ids i32 [R]; logits [R, V] f32
    virtual void argmax_rows(Tensor ids, const Tensor& logits) = 0;
    // ids[r] = sample_row(row r of logits, params[r]): temperature, top-k, top-p, min-p and a seeded draw, defined
    // in backend/sampling.h (sampling on the device: only the ids travel back)
    //                                          ids i32 [R]; logits [R, V] f32; params i32 [R, 8] (SamplingRow each)
    virtual void sample_rows(Tensor ids, const Tensor& logits, const Tensor& params) = 0;
    // Repetition, presence and frequency penalties in place, as the engine's host sampler applies them (the rule is
    // apply_penalties_row in backend/sampling.h). Row r's entries are entries[row_start[r] .. row_start[r + 1]): each a
    // DISTINCT token id of the row's history (prompt and generated) and its count among the generated tokens (0 if
    // only in the prompt); ids outside [0, V) are skipped. params[r] = (repetition, presence, frequency, unused).
    //        logits [R, V] f32 (in place); entries i32 [E, 2] (id, count); row_start i32 [R + 1]; params f32 [R, 4]
    virtual void apply_penalties(Tensor logits, const Tensor& entries, const Tensor& row_start, const Tensor& params) {
        unsupported_op("apply_penalties");
    }
    // Log-probabilities under the raw distribution of each row (row_log_sum_exp, row_top_logprobs in
    // backend/sampling.h): lse[r] = log-sum-exp of row r; top_ids[r, :] = its n largest logits, best first, ties by
    // the smaller id; top_logprobs[r, j] = logits[r, top_ids[r, j]] - lse[r]. Slots j >= V hold id -1, logprob -inf.
    // n in [0, 20]; with n = 0 top_ids and top_logprobs are not touched (may be empty tensors).
    //        top_ids i32 [R, n]; top_logprobs f32 [R, n]; lse f32 [R]; logits [R, V] f32
    virtual void row_logprobs(Tensor top_ids, Tensor top_logprobs, Tensor lse, const Tensor& logits, int n) {
        unsupported_op("row_logprobs");
    }
    // out[r] = logits[r, ids[r]] - lse[r] (NaN for an id outside [0, V))
    //        out f32 [R]; logits [R, V] f32; lse f32 [R] (from row_logprobs); ids i32 [R]
    virtual void token_logprobs(Tensor out, const Tensor& logits, const Tensor& lse, const Tensor& ids) {
        unsupported_op("token_logprobs");
    }
    // x *= s; optionally x = softcap * tanh(x / softcap) when softcap > 0
    virtual void scale(Tensor x, float s, float softcap) = 0;

  protected:
    // The default of an op a backend does not implement: Error(Unsupported).
    [[noreturn]] void unsupported_op(const char* op) const;

  private:
    std::deque<std::vector<uint8_t>> readbacks_;  // the default readbacks' bytes, oldest first
    uint64_t next_readback_ = 0;
};

}  // namespace osprey::backend
