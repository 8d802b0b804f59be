// CudaBackend: the Backend interface on one GPU. Host-side validation and dispatch live here (host compiler);
// kernels live in the per-family .cu files, cuBLAS in gemm.cpp. Every op is enqueued on the backend's own
// non-blocking stream; launch errors are checked right after each launch.
#include "backend/cuda/cuda_backend.h"

#include <memory>
#include <string>

#include <fmt/format.h>

#include "backend/cuda/activation.cuh"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv_quant.cuh"
#include "backend/cuda/kv_write.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/rope.cuh"

namespace osprey::backend {

namespace {

using namespace cuda;

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
    }

    ~CudaBackend() override {
        cudaSetDevice(device_);
        if (stream_) cudaStreamSynchronize(stream_);
        gemm_.reset();
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
        return Buffer(this, p, n_bytes);
    }
    void free_raw(void* data, size_t) override {
        cudaSetDevice(device_);
        cudaFree(data);  // synchronizes the device: nothing in flight still reads it
    }
    // The host buffer may be reused as soon as copy_from_host returns.
    void copy_from_host(void* dst, const void* src, size_t n) override {
        bind();
        OSP_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, stream_));
        OSP_CUDA_CHECK(cudaStreamSynchronize(stream_));
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

    // ---- capabilities ----
    bool supports_matmul(DType w) const override { return gemv_supported(w) && Gemm::supported(w); }
    bool supports_embedding(DType t) const override { return embedding_supported(t); }
    bool supports_kv_dtype(DType t) const override { return t == DType::F32 || t == DType::F16; }

    // ---- ops ----
    void embedding(Tensor out, const Tensor& table, const Tensor& ids, float scale) override {
        bind();
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
        if (M <= kGemvMaxRows) {
            launch_gemv(out.as<float>(), x.as<float>(), w.dtype, w.data, M, N, K, stream_);
            OSP_CUDA_CHECK_LAUNCH();
        } else {
            gemm_->run(out.as<float>(), x.as<float>(), w.dtype, w.data, M, N, K);
        }
    }

    void add_bias(Tensor x, const Tensor& bias) override {
        bind();
        const int64_t N = bias.numel();
        launch_add_bias(x.as<float>(), bias.as<float>(), x.numel() / N, N, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void add(Tensor out, const Tensor& a, const Tensor& b) override {
        bind();
        launch_add(out.as<float>(), a.as<float>(), b.as<float>(), out.numel(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void rms_norm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
        bind();
        const int64_t d = w.cols();
        launch_rms_norm(out.as<float>(), x.as<float>(), w.as<float>(), x.numel() / d, d, eps, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void gated_activation(Tensor out, const Tensor& gate, const Tensor& up, Activation act) override {
        bind();
        launch_gated_activation(out.as<float>(), gate.as<float>(), up.as<float>(), out.numel(),
                                act == Activation::Silu ? GatedAct::Silu : GatedAct::GeluTanh, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, const RopeParams& p) override {
        bind();
        launch_rope(x.as<float>(), positions.as<int32_t>(), inv_freq.as<float>(), positions.numel(), p.n_heads,
                    p.head_dim, p.rotary_dim, p.neox, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void kv_write(KvLayerView kv, const Tensor& k, const Tensor& v, const AttentionBatch& batch) override {
        bind();
        OSP_CHECK(kv.k.dtype == kv.v.dtype && supports_kv_dtype(kv.k.dtype), "kv pool dtype {}",
                  dtype_name(kv.k.dtype));
        launch_kv_write(kv.k.data, kv.v.data, kv.k.dtype == DType::F16, k.as<float>(), v.as<float>(),
                        batch.slot_mapping.as<int32_t>(), k.rows(), k.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void paged_attention(Tensor out, const Tensor& q, KvLayerView kv, const AttentionBatch& batch,
                         const AttentionParams& p) override {
        bind();
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

    void gather_rows(Tensor out, const Tensor& x, const Tensor& rows) override {
        bind();
        launch_gather_rows(out.as<float>(), x.as<float>(), rows.as<int32_t>(), rows.numel(), x.cols(), stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

    void scale(Tensor x, float s, float softcap) override {
        bind();
        launch_scale(x.as<float>(), x.numel(), s, softcap, stream_);
        OSP_CUDA_CHECK_LAUNCH();
    }

  private:
    // Ops may be called from any host thread: make this backend's device current.
    void bind() const { OSP_CUDA_CHECK(cudaSetDevice(device_)); }

    int device_;
    std::string name_;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<Gemm> gemm_;
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
