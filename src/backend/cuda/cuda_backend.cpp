// CudaBackend: the Backend interface on one GPU. Host-side validation and dispatch live here (host compiler);
// kernels live in the per-family .cu files, cuBLAS in gemm.cpp. Every op is enqueued on the backend's own
// non-blocking stream; launch errors are checked right after each launch.
#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv_quant.cuh"
#include "backend/cuda/kv_write.cuh"
#include "backend/cuda/logit_ops.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/op_profiler.h"
#include "backend/cuda/rope.cuh"
#include "backend/cuda/sampling.cuh"

namespace osprey::backend {

namespace {

using namespace cuda;

// Host-to-device copies go through a pinned staging ring of two halves, so they are asynchronous (the stream
// never waits for the host, and the caller may reuse its buffer at once) and large ones (weights at load time)
// stream at full PCIe speed. Before a half is refilled, the copies that last read it are waited for.
class PinnedStaging {
  public:
    static constexpr size_t kHalfBytes = size_t(32) << 20;

    PinnedStaging() {
        OSP_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&base_), 2 * kHalfBytes));
        for (auto& e : done_) OSP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    ~PinnedStaging() {
        for (auto& e : done_) cudaEventDestroy(e);
        cudaFreeHost(base_);
    }
    PinnedStaging(const PinnedStaging&) = delete;
    PinnedStaging& operator=(const PinnedStaging&) = delete;

    // Copies n bytes from src to dst (device) on `stream`, in chunks of at most one half.
    void copy(void* dst, const void* src, size_t n, cudaStream_t stream) {
        auto* d = static_cast<char*>(dst);
        const auto* h = static_cast<const char*>(src);
        while (n > 0) {
            const size_t chunk = std::min(n, kHalfBytes);
            if (used_ + chunk > kHalfBytes) {  // switch halves: wait until the other half's copies are done
                OSP_CUDA_CHECK(cudaEventRecord(done_[half_], stream));
                half_ ^= 1;
                OSP_CUDA_CHECK(cudaEventSynchronize(done_[half_]));
                used_ = 0;
            }
            char* p = base_ + size_t(half_) * kHalfBytes + used_;
            std::memcpy(p, h, chunk);
            OSP_CUDA_CHECK(cudaMemcpyAsync(d, p, chunk, cudaMemcpyHostToDevice, stream));
            used_ += (chunk + 255) & ~size_t(255);
            d += chunk, h += chunk, n -= chunk;
        }
    }

  private:
    char* base_ = nullptr;
    cudaEvent_t done_[2] = {};
    int half_ = 0;
    size_t used_ = 0;
};

// Device-to-host copies that do not wait (Backend::begin_readback): a ring of pinned slots, each with the event
// recorded after its copy. A slot is reused only after its previous readback was finished.
class ReadbackRing {
  public:
    static constexpr int kSlots = 4;
    ReadbackRing() {
        for (Slot& s : slots_) OSP_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
    }
    ~ReadbackRing() {
        for (Slot& s : slots_) {
            cudaEventDestroy(s.done);
            if (s.host) cudaFreeHost(s.host);
        }
    }
    ReadbackRing(const ReadbackRing&) = delete;
    ReadbackRing& operator=(const ReadbackRing&) = delete;

    uint64_t begin(const void* src, size_t n, cudaStream_t stream) {
        OSP_CHECK(next_ - finished_ < kSlots, "more than {} readbacks in flight", kSlots);
        Slot& s = slots_[next_ % kSlots];
        if (s.capacity < n) {
            if (s.host) OSP_CUDA_CHECK(cudaFreeHost(s.host));
            s.host = nullptr;
            s.capacity = std::max<size_t>(n, 4096);
            OSP_CUDA_CHECK(cudaMallocHost(&s.host, s.capacity));
        }
        s.n = n;
        OSP_CUDA_CHECK(cudaMemcpyAsync(s.host, src, n, cudaMemcpyDeviceToHost, stream));
        OSP_CUDA_CHECK(cudaEventRecord(s.done, stream));
        return next_++;
    }
    void finish(uint64_t ticket, void* dst) {
        OSP_CHECK(ticket == finished_ && ticket < next_, "readback {} finished out of order", ticket);
        Slot& s = slots_[ticket % kSlots];
        OSP_CUDA_CHECK(cudaEventSynchronize(s.done));
        std::memcpy(dst, s.host, s.n);
        finished_++;
    }

  private:
    struct Slot {
        void* host = nullptr;
        size_t capacity = 0, n = 0;
        cudaEvent_t done = nullptr;
    };
    Slot slots_[kSlots];
    uint64_t next_ = 0, finished_ = 0;
};

// An instantiated CUDA graph of one backend's stream.
class CudaGraph final : public OpGraph {
  public:
    CudaGraph(cudaGraphExec_t exec, cudaStream_t stream, uint64_t epoch) : exec_(exec), stream_(stream), epoch_(epoch) {}
    ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
    CudaGraph(const CudaGraph&) = delete;
    CudaGraph& operator=(const CudaGraph&) = delete;
    void launch() override { OSP_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }
    bool valid() const override { return scratch_epoch() == epoch_; }

  private:
    cudaGraphExec_t exec_;
    cudaStream_t stream_;
    uint64_t epoch_;
};

class CudaBackend final : public Backend {
  public:
    explicit CudaBackend(int device) : device_(device) {
        OSP_CUDA_CHECK(cudaSetDevice(device_));
        cudaDeviceProp prop{};
        OSP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
        name_ = fmt::format("cuda:{} ({}, sm_{}{}, {} SMs, {:.1f} GiB)", device_, prop.name, prop.major, prop.minor,
                            prop.multiProcessorCount, double(prop.totalGlobalMem) / double(1 << 30));
        OSP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        gemm_ = std::make_unique<Gemm>(stream_);
        staging_ = std::make_unique<PinnedStaging>();
        readbacks_ = std::make_unique<ReadbackRing>();
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        if (stream_) cudaStreamSynchronize(stream_);
        gemm_.reset();
        readbacks_.reset();
        staging_.reset();
        if (stream_) cudaStreamDestroy(stream_);
    }

    std::string name() const override { return name_; }
    Device device() const override { return Device::Cuda; }

    // ---- memory ----
    Buffer alloc(size_t n_bytes) override {
        bind();
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, n_bytes == 0 ? 256 : n_bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();  // clear the sticky-free allocation error
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            raise(ErrorCode::OutOfMemory, "cuda alloc of {} bytes on device {} failed: {} ({} of {} bytes free)",
                  n_bytes, device_, cudaGetErrorString(e), free_b, total_b);
        }
        allocated_ += n_bytes;
        return Buffer(this, p, n_bytes);
    }
    void free_raw(void* data, size_t n_bytes) override {
        cudaSetDevice(device_);
        cudaFree(data);  // synchronizes the device: nothing in flight still reads it
        allocated_ -= n_bytes;
    }
    size_t allocated_bytes() const override { return allocated_.load(); }
    // Asynchronous through the pinned staging ring; the host buffer may be reused as soon as this returns.
    void copy_from_host(void* dst, const void* src, size_t n) override {
        bind();
        staging_->copy(dst, src, n, stream_);
    }
    void copy_to_host(void* dst, const void* src, size_t n) override {
        bind();
        OSP_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, stream_));
        OSP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    void copy(void* dst, const void* src, size_t n) override {
        bind();
        OSP_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, stream_));
    }
    void synchronize() override {
        bind();
        OSP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    uint64_t begin_readback(const void* src, size_t n) override {
        bind();
        return readbacks_->begin(src, n, stream_);
    }
    void finish_readback(uint64_t ticket, void* dst) override {
        bind();
        readbacks_->finish(ticket, dst);
    }

    std::pair<size_t, size_t> device_memory() const override {
        bind();
        size_t free_b = 0, total_b = 0;
        OSP_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
        return {free_b, total_b};
    }

    // ---- op graphs ----
    // The profiler times each op with events, which a graph would hide: profiled runs stay eager.
    bool supports_graphs() const override { return !profiler_.enabled(); }
    void begin_capture() override {
        bind();
        capture_epoch_ = scratch_epoch();
        OSP_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    }
    std::unique_ptr<OpGraph> end_capture() override {
        bind();
        cudaGraph_t graph = nullptr;
        OSP_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
        cudaGraphExec_t exec = nullptr;
        const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        OSP_CUDA_CHECK(e);
        return std::make_unique<CudaGraph>(exec, stream_, capture_epoch_);
    }
    void abort_capture() override {
        bind();
        cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing(stream_, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
            cudaGraph_t graph = nullptr;
            cudaStreamEndCapture(stream_, &graph);
            if (graph) cudaGraphDestroy(graph);
        }
        cudaGetLastError();  // the failed capture's error is the caller's to report
    }

    // ---- capabilities ----
    // Both matmul paths dequantize with dequant8 (the GEMV in registers, the GEMM into f16 slices): one dtype list.
    bool supports_matmul(DType w) const override { return gemv_supported(w); }
    bool supports_embedding(DType t) const override { return embedding_supported(t); }
    bool supports_kv_dtype(DType t) const override { return t == DType::F32 || t == DType::F16; }

    // ---- ops ----
    void embedding(Tensor out, const Tensor& table, const Tensor& ids, float scale) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "embedding", stream_);
        launch_embedding(out.as<float>(), table.data, table.dtype, table.rows(), table.cols(), ids.as<int32_t>(),
                         ids.numel(), scale, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void matmul(Tensor out, const Tensor& x, const Tensor& w) override {
        bind();
        const int64_t M = x.rows(), N = w.rows(), K = x.cols();
        OSP_CHECK(w.cols() == K && out.numel() == M * N, "matmul shapes out {} x {} w {}", out.shape_str(),
                  x.shape_str(), w.shape_str());
        if (M <= 0 || N <= 0) return;
        const OpProfiler::Scope prof(&profiler_, matmul_label(w.dtype, use_gemv(w.dtype, M)), stream_);
        if (use_gemv(w.dtype, M)) {
            launch_gemv(out.as<float>(), x.as<float>(), w.dtype, w.data, M, N, K, stream_);
            OSP_CUDA_CHECK_LAUNCH();
        } else {
            gemm_->run(out.as<float>(), x.as<float>(), w.dtype, w.data, M, N, K);
        }
    }

    // q/k/v (or any weights of one K) through the GEMV at small M: one launch per dtype, x quantized once (a Q4_K_M
    // file's Q4_K q/k and Q6_K v); at larger M, weights of one dtype stored back to back (the model allocates each
    // group so on a GPU) as one GEMM whose columns are then split.
    void matmul_multi(std::span<Tensor> outs, const Tensor& x, std::span<const Tensor> ws) override {
        const int64_t M = x.rows(), K = x.cols();
        bool fused = M >= 1 && !ws.empty() && ws.size() <= size_t(kMaxGemvJobs);
        bool all_gemv = true;
        for (size_t i = 0; fused && i < ws.size(); i++) {
            fused = ws[i].cols() == K && outs[i].numel() == M * ws[i].rows();
            all_gemv = all_gemv && use_gemv(ws[i].dtype, M);
        }
        // back_to_back: one dtype and K, stored contiguously.
        if (fused && !use_gemv(ws[0].dtype, M) && M <= kFusedGemmMaxRows && back_to_back(ws)) {
            bind();
            const OpProfiler::Scope prof(&profiler_, matmul_label(ws[0].dtype, false), stream_);
            ColumnSplit split{};
            int64_t total = 0;
            for (size_t i = 0; i < ws.size(); i++) {
                split.out[i] = outs[i].as<float>();
                split.n[i] = ws[i].rows();
                total += ws[i].rows();
            }
            split.n_parts = int(ws.size());
            auto* tmp = static_cast<float*>(fused_out_.get(size_t(M * total) * 4, stream_));
            gemm_->run(tmp, x.as<float>(), ws[0].dtype, ws[0].data, M, total, K);
            launch_split_columns(split, tmp, M, stream_);
            OSP_CUDA_CHECK_LAUNCH();
            return;
        }
        if (!fused || !all_gemv) return Backend::matmul_multi(outs, x, ws);
        bind();
        const OpProfiler::Scope prof(&profiler_, matmul_label(ws[0].dtype, true), stream_);
        GemvJob jobs[kMaxGemvJobs];
        for (size_t i = 0; i < ws.size(); i++) jobs[i] = {ws[i].data, outs[i].as<float>(), ws[i].rows(), ws[i].dtype};
        launch_gemv_multi(jobs, int(ws.size()), x.as<float>(), M, K, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void gated_matmul(Tensor gate, Tensor up, const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                      Activation act) override {
        const int64_t M = x.rows(), K = x.cols(), N = w_gate.rows();
        const bool same = w_gate.dtype == w_up.dtype && w_up.rows() == N && w_gate.cols() == K && w_up.cols() == K;
        const Tensor pair[2] = {w_gate, w_up};
        if (same && !use_gemv(w_gate.dtype, M) && M <= kFusedGemmMaxRows && back_to_back(pair)) {
            bind();
            const OpProfiler::Scope prof(&profiler_, "gemm gated", stream_);
            auto* tmp = static_cast<float*>(fused_out_.get(size_t(M * 2 * N) * 4, stream_));
            gemm_->run(tmp, x.as<float>(), w_gate.dtype, w_gate.data, M, 2 * N, K);
            launch_gated_activation_fused(gate.as<float>(), tmp, M, N,
                                          act == Activation::Silu ? GatedAct::Silu : GatedAct::GeluTanh, stream_);
            OSP_CUDA_CHECK_LAUNCH();
            return;
        }
        if (M < 1 || !same || !use_gemv(w_gate.dtype, M)) return Backend::gated_matmul(gate, up, x, w_gate, w_up, act);
        bind();
        const OpProfiler::Scope prof(&profiler_, "gemv gated", stream_);
        OSP_CHECK(gate.numel() == M * N, "gated_matmul shapes gate {} x {} w {}", gate.shape_str(), x.shape_str(),
                  w_gate.shape_str());
        launch_gemv_gated(gate.as<float>(), x.as<float>(), w_gate.dtype, w_gate.data, w_up.data, M, N, K,
                          act == Activation::Silu, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void add_bias(Tensor x, const Tensor& bias) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "add_bias", stream_);
        const int64_t N = bias.numel();
        launch_add_bias(x.as<float>(), bias.as<float>(), x.numel() / N, N, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void add(Tensor out, const Tensor& a, const Tensor& b) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "add", stream_);
        launch_add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void rms_norm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "rms_norm", stream_);
        const int64_t d = w.cols();
        launch_rms_norm(out.as<float>(), x.as<float>(), w.as<float>(), x.numel() / d, d, eps, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void add_rms_norm(Tensor x, const Tensor& delta, Tensor out, const Tensor& w, float eps) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "add_rms_norm", stream_);
        const int64_t d = w.cols();
        launch_add_rms_norm(x.as<float>(), delta.as<float>(), out.as<float>(), w.as<float>(), x.numel() / d, d, eps,
                            stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void gated_activation(Tensor out, const Tensor& gate, const Tensor& up, Activation act) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "gated_activation", stream_);
        launch_gated_activation(out.as<float>(), gate.as<float>(), up.as<float>(), out.numel(),
                                act == Activation::Silu ? GatedAct::Silu : GatedAct::GeluTanh, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, const RopeParams& p) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "rope", stream_);
        launch_rope(x.as<float>(), positions.as<int32_t>(), inv_freq.as<float>(), positions.numel(), p.n_heads,
                    p.head_dim, p.rotary_dim, p.neox, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void kv_write(KvLayerView kv, const Tensor& k, const Tensor& v, const AttentionBatch& batch) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "kv_write", stream_);
        OSP_CHECK(kv.k.dtype == kv.v.dtype && supports_kv_dtype(kv.k.dtype), "kv pool dtype {}",
                  dtype_name(kv.k.dtype));
        launch_kv_write(kv.k.data, kv.v.data, kv.k.dtype == DType::F16, k.as<float>(), v.as<float>(),
                        batch.slot_mapping.as<int32_t>(), k.rows(), k.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void rope_kv_write(Tensor q, Tensor k, const Tensor& v, const Tensor& inv_freq, const RopeParams& rope_q,
                       const RopeParams& rope_k, KvLayerView kv, const AttentionBatch& batch) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "rope_kv_write", stream_);
        OSP_CHECK(rope_q.head_dim == rope_k.head_dim && rope_q.rotary_dim == rope_k.rotary_dim &&
                      rope_q.neox == rope_k.neox && kv.k.dtype == kv.v.dtype && supports_kv_dtype(kv.k.dtype),
                  "rope_kv_write: q and k must share the head layout; kv pool dtype {}", dtype_name(kv.k.dtype));
        launch_rope_kv_write(q.as<float>(), k.as<float>(), v.as<float>(), batch.positions.as<int32_t>(),
                             inv_freq.as<float>(), batch.positions.numel(), rope_q.n_heads, rope_k.n_heads,
                             rope_q.head_dim, rope_q.rotary_dim, rope_q.neox, kv.k.data, kv.v.data,
                             kv.k.dtype == DType::F16, batch.slot_mapping.as<int32_t>(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void paged_attention(Tensor out, const Tensor& q, KvLayerView kv, const AttentionBatch& batch,
                         const AttentionParams& p) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, batch.n_tokens > batch.n_seqs ? "attention (prefill)" : "attention (decode)", stream_);
        OSP_CHECK(p.head_dim > 0 && p.head_dim <= kAttentionMaxHeadDim, "head_dim {} (at most {})", p.head_dim,
                  kAttentionMaxHeadDim);
        OSP_CHECK(p.n_kv_heads > 0 && p.n_heads % p.n_kv_heads == 0, "{} heads over {} kv heads", p.n_heads,
                  p.n_kv_heads);
        PagedAttentionArgs a;
        a.out = out.as<float>();
        a.q = q.as<float>();
        a.k_pool = kv.k.data;
        a.v_pool = kv.v.data;
        a.kv_f16 = kv.k.dtype == DType::F16;
        a.query_start = batch.query_start.as<int32_t>();
        a.positions = batch.positions.as<int32_t>();
        a.block_tables = batch.block_tables.as<int32_t>();
        a.n_seqs = batch.n_seqs;
        a.n_tokens = batch.n_tokens;
        a.max_blocks_per_seq = batch.max_blocks_per_seq;
        a.max_seq_len = batch.max_seq_len;
        a.block_size = kv.block_size;
        a.n_heads = p.n_heads;
        a.n_kv_heads = p.n_kv_heads;
        a.head_dim = p.head_dim;
        a.scale = p.scale;
        a.window = p.window;
        a.softcap = p.softcap;
        launch_paged_attention(a, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void copy_indexed_i32(Tensor dst, const Tensor& dst_index, const Tensor& src, const Tensor& src_index) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "copy_indexed_i32", stream_);
        OSP_CHECK(dst_index.numel() == src_index.numel(), "copy_indexed_i32: {} destinations for {} sources",
                  dst_index.numel(), src_index.numel());
        launch_copy_indexed_i32(dst.as<int32_t>(), dst_index.as<int32_t>(), src.as<int32_t>(), src_index.as<int32_t>(),
                                dst_index.numel(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void gather_rows(Tensor out, const Tensor& x, const Tensor& rows) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "gather_rows", stream_);
        launch_gather_rows(out.as<float>(), x.as<float>(), rows.as<int32_t>(), rows.numel(), x.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void argmax_rows(Tensor ids, const Tensor& logits) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "argmax_rows", stream_);
        launch_argmax_rows(ids.as<int32_t>(), logits.as<float>(), logits.rows(), logits.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void sample_rows(Tensor ids, const Tensor& logits, const Tensor& params) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "sample_rows", stream_);
        launch_sample_rows(ids.as<int32_t>(), logits.as<float>(), params.data, logits.rows(), logits.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void apply_penalties(Tensor logits, const Tensor& entries, const Tensor& row_start, const Tensor& params) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "apply_penalties", stream_);
        launch_apply_penalties(logits.as<float>(), entries.as<int32_t>(), row_start.as<int32_t>(), params.as<float>(),
                               logits.rows(), logits.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void row_logprobs(Tensor top_ids, Tensor top_logprobs, Tensor lse, const Tensor& logits, int n) override {
        OSP_CHECK(n >= 0 && n <= 20, "row_logprobs: n = {} (at most 20)", n);
        bind();
        const OpProfiler::Scope prof(&profiler_, "row_logprobs", stream_);
        launch_row_logprobs(top_ids.as<int32_t>(), top_logprobs.as<float>(), lse.as<float>(), logits.as<float>(),
                            logits.rows(), logits.cols(), n, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void token_logprobs(Tensor out, const Tensor& logits, const Tensor& lse, const Tensor& ids) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "token_logprobs", stream_);
        launch_token_logprobs(out.as<float>(), logits.as<float>(), lse.as<float>(), ids.as<int32_t>(), logits.rows(),
                              logits.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void scale(Tensor x, float s, float softcap) override {
        bind();
        const OpProfiler::Scope prof(&profiler_, "scale", stream_);
        launch_scale(x.as<float>(), x.numel(), s, softcap, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

  private:
    // Block types take the matrix-vector kernels up to kGemvMaxRows rows, the quantized GEMM (gemm_quant.cu) from
    // there on: the GEMV's integer work grows with the rows while the GEMM's time is nearly flat. H200 8B decode,
    // ms per step at batch 2 / 3 / 4 / 6 / 8 (session 7, `osprey bench offline --num-prompts N --max-num-seqs N`):
    // Q4_K_M GEMV 3.86 / 4.86 / 5.69 / 7.84 / 9.66 vs GEMM 6.26 / 6.30 / 6.34 / 6.44 / 6.50; Q8_0 GEMV 4.86 / 6.11 /
    // 7.23 / 10.13 / 13.01 vs GEMM 7.35 / 7.38 / 7.39 / 7.47 / 7.55. Float types take the GEMV only at one row: from
    // two rows on, cuBLAS's tensor-core GEMM reads the weights once for all rows and is 2-3x faster than the f32
    // kernels (bf16 8B shapes: 20 us at M = 9 vs 49 us at M = 4 for q/k/v). So results are batch-invariant up to
    // kGemvMaxRows rows for block types and at one row for float types.
    static bool use_gemv(DType w, int64_t M) {
        return M >= 1 && M <= (is_quantized(w) ? kGemvMaxRows : 1);
    }
    // Fused GEMMs write [M, sum of N] to scratch first: only for decode-sized batches (prefill products are large
    // enough on their own, and their scratch would be large).
    static constexpr int64_t kFusedGemmMaxRows = 512;
    // Weights of one dtype and K stored back to back: one [sum of rows, K] matrix.
    static bool back_to_back(std::span<const Tensor> ws) {
        for (size_t i = 1; i < ws.size(); i++)
            if (ws[i].dtype != ws[0].dtype || ws[i].cols() != ws[0].cols() ||
                ws[i].data != static_cast<const char*>(ws[i - 1].data) + ws[i - 1].n_bytes())
                return false;
        return !ws.empty();
    }

    // Ops may be called from any host thread: make this backend's device current (once per thread and device).
    void bind() const {
        thread_local int bound = -1;
        if (bound != device_) {
            OSP_CUDA_CHECK(cudaSetDevice(device_));
            bound = device_;
        }
    }
    // "gemv bf16", "gemm q4_k" ... (static storage: the profiler keeps the pointer until it flushes)
    static const char* matmul_label(DType w, bool gemv) {
        static const auto labels = [] {
            std::vector<std::string> l;
            for (int d = 0; d < kNumDTypes; d++)
                for (const char* kind : {"gemm ", "gemv "}) l.push_back(kind + std::string(dtype_name(DType(d))));
            return l;
        }();
        return labels[size_t(2 * int(w) + (gemv ? 1 : 0))].c_str();
    }

    int device_;
    std::string name_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Gemm> gemm_;
    std::unique_ptr<PinnedStaging> staging_;
    std::unique_ptr<ReadbackRing> readbacks_;
    DeviceScratch fused_out_;
    std::atomic<size_t> allocated_{0};
    uint64_t capture_epoch_ = 0;
    OpProfiler profiler_;  // destroyed first: prints while the stream is alive
};

}  // namespace

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        raise(ErrorCode::Unsupported, "no usable CUDA GPU: {} (use --device cpu)",
              e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    }
    if (device_index < 0 || device_index >= n)
        raise(ErrorCode::NotFound, "CUDA device {} not found: {} device(s) present (0..{})", device_index, n, n - 1);
    return std::make_unique<CudaBackend>(device_index);
}

}  // namespace osprey::backend
