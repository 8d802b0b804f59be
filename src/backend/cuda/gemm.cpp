// cuBLAS GEMMs for float weights from M = 2 (see gemm.cuh; block types take gemm_quant.cu from M > kGemvMaxRows).
// Row-major out [M, N] = x [M, K] . w [N, K]^T is the column-major product out^T [N, M] = w^T . x^T with w read
// transposed (lda = K) and x as is (ldb = K).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemm_quant.cuh"

namespace osprey::backend::cuda {

namespace {
std::atomic<uint64_t> g_scratch_epoch{0};
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

// OSPREY_GEMM picks how 16-bit products run (tuning only): "blas" (default) cublasGemmEx; "lt" cuBLASLt, at
// M <= kLtTuneMaxRows the measured-fastest of its heuristic's candidates per shape (timed once per row bucket,
// outside graph capture), else its first; "lt0" cuBLASLt, the heuristic's first choice. OSPREY_GEMM_LOG=1 prints
// each tuned choice. On the H200 (Llama-3.1-8B shapes) "lt" is slower end to end than the default, also since its
// candidates are timed with L2 flushed (session 8, decode ms/step at batch 16 / 64 / 128: 6.09 / 9.29 / 12.9-13.5
// vs 5.81 / 8.40 / 11.6-11.7, bench/results/h200/session8_gemm_lt_cold_l2.txt), so it is not the default.
enum class GemmMode { Blas, LtFirst, LtTuned };
GemmMode gemm_mode() {
    static const GemmMode m = [] {
        const char* e = std::getenv("OSPREY_GEMM");
        const std::string v = e != nullptr ? e : "";
        return v == "lt" ? GemmMode::LtTuned : (v == "lt0" ? GemmMode::LtFirst : GemmMode::Blas);
    }();
    return m;
}
bool gemm_log() {
    static const bool v = std::getenv("OSPREY_GEMM_LOG") != nullptr && std::atoi(std::getenv("OSPREY_GEMM_LOG")) != 0;
    return v;
}

// Row counts that share a tuned algorithm: 9..16, 17..32, ... (powers of two).
int64_t m_bucket(int64_t M) {
    int64_t b = 16;
    while (b < M) b *= 2;
    return b;
}

// Whether block weights at M rows take the direct quantized GEMM (OSPREY_QGEMM, read per call so that tests and
// timings can switch it: "0" never, "1" at every M, else up to kQuantGemmMaxRows).
bool use_quant_gemm(int64_t M) {
    const char* e = std::getenv("OSPREY_QGEMM");
    if (e != nullptr && e[0] == '0') return false;
    if (e != nullptr && e[0] == '1') return true;
    return M <= kQuantGemmMaxRows;
}

constexpr int kLtCandidates = 16;
constexpr int64_t kLtTuneMaxRows = 256;  // decode batches; prefill shapes take the heuristic's first choice
}  // namespace

uint64_t scratch_epoch() { return g_scratch_epoch.load(); }

DeviceScratch::~DeviceScratch() {
    if (data_) cudaFree(data_);
}

void* DeviceScratch::get(size_t n_bytes, cudaStream_t stream) {
    if (n_bytes <= n_bytes_) return data_;
    OSP_CUDA_CHECK(cudaStreamSynchronize(stream));  // work in flight may still read the old area
    if (data_) OSP_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    n_bytes_ = 0;
    const size_t rounded = (n_bytes + (size_t(1) << 20) - 1) & ~((size_t(1) << 20) - 1);
    OSP_CUDA_CHECK(cudaMalloc(&data_, rounded));
    n_bytes_ = rounded;
    g_scratch_epoch++;
    return data_;
}

Gemm::Gemm(cudaStream_t stream) : stream_(stream) {
    OSP_CUBLAS_CHECK(cublasCreate(&handle_));
    OSP_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
    // Default math: CUBLAS_COMPUTE_32F products stay in f32 (no TF32 unless NVIDIA_TF32_OVERRIDE asks for it).
    OSP_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
    OSP_CUDA_CHECK(cudaMalloc(&workspace_, kCublasWorkspaceBytes));
    OSP_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, kCublasWorkspaceBytes));
    OSP_CUBLAS_CHECK(cublasLtCreate(&lt_));
}

Gemm::~Gemm() {
    for (auto& [key, p] : plans_) {
        if (p.desc) cublasLtMatmulDescDestroy(p.desc);
        for (cublasLtMatrixLayout_t l : {p.a, p.b, p.c})
            if (l) cublasLtMatrixLayoutDestroy(l);
    }
    if (lt_) cublasLtDestroy(lt_);
    if (handle_) cublasDestroy(handle_);
    if (workspace_) cudaFree(workspace_);
}

void Gemm::run(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K) {
    const float one = 1.0f, zero = 0.0f;
    const int m = int(M), n = int(N), k = int(K);
    if (w_dtype == DType::F32) {
        OSP_CUBLAS_CHECK(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, static_cast<const float*>(w), k,
                                     x, k, &zero, out, n));
        return;
    }
    // Activations in the weight's 16-bit type (f16 for dequantized block types).
    const DType half_type = w_dtype == DType::BF16 ? DType::BF16 : DType::F16;
    const cudaDataType cuda_type = half_type == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
    void* xh = x_scratch_.get(size_t(M * K) * 2, stream_);
    launch_convert_f32(xh, half_type, x, M * K, stream_);
    OSP_CUDA_CHECK_LAUNCH();
    if (w_dtype == DType::F16 || w_dtype == DType::BF16) {
        if (gemm_mode() != GemmMode::Blas && run_lt(out, xh, cuda_type, w, M, N, K)) return;
        OSP_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, cuda_type, k, xh, cuda_type,
                                      k, &zero, out, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    if (use_quant_gemm(M) && quant_gemm_supported(w_dtype, K)) {
        const QuantGemmPlan plan = plan_quant_gemm(w_dtype, M, N, K);
        float* ws = plan.workspace_bytes > 0 ? static_cast<float*>(split_scratch_.get(plan.workspace_bytes, stream_))
                                             : nullptr;
        launch_quant_gemm(plan, out, xh, w_dtype, w, M, N, K, ws, stream_);
        OSP_CUDA_CHECK_LAUNCH();
        return;
    }
    const size_t row_bytes = dtype_row_bytes(w_dtype, K);
    const int64_t slice = std::max<int64_t>(1, std::min<int64_t>(N, int64_t(kDequantSliceBytes / (size_t(K) * 2))));
    auto* wh = static_cast<uint16_t*>(w_scratch_.get(size_t(slice * K) * 2, stream_));
    for (int64_t n0 = 0; n0 < N; n0 += slice) {
        const int64_t nn = std::min(slice, N - n0);
        launch_dequantize_f16(wh, w_dtype, static_cast<const char*>(w) + size_t(n0) * row_bytes, nn, K, stream_);
        OSP_CUDA_CHECK_LAUNCH();
        OSP_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, int(nn), m, k, &one, wh, CUDA_R_16F, k, xh,
                                      CUDA_R_16F, k, &zero, out + n0, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
    }
}

// The column-major product out^T [N, M] = w^T . x^T, as in cublasGemmEx above: A = w read transposed (K x N,
// lda K), B = x (K x M, ldb K), C = out (N x M, ldc N), f32 accumulation and output.
Gemm::LtPlan& Gemm::lt_plan(cudaDataType type, int64_t M, int64_t N, int64_t K) {
    LtPlan& p = plans_[PlanKey{int(type), M, N, K}];
    if (p.desc != nullptr) return p;
    OSP_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    OSP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    OSP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    OSP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, type, uint64_t(K), uint64_t(N), K));
    OSP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, type, uint64_t(K), uint64_t(M), K));
    OSP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, uint64_t(N), uint64_t(M), N));
    return p;
}

// The plan's algorithm: the heuristic's first candidate, or (tuned mode, outside graph capture) the fastest of
// its candidates measured on this shape, kept for every M of the same bucket. A candidate replaces the first
// only when it is more than 3% faster.
void Gemm::lt_choose(LtPlan& plan, float* out, const void* xh, const void* w, int64_t M, int64_t N, int64_t K) {
    cublasLtMatmulPreference_t pref = nullptr;
    OSP_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kCublasWorkspaceBytes;
    OSP_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                          sizeof(ws)));
    cublasLtMatmulHeuristicResult_t res[kLtCandidates];
    int n_res = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, plan.desc, plan.a, plan.b, plan.c, plan.c, pref,
                                                             kLtCandidates, res, &n_res);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || n_res == 0) return;
    plan.algo = res[0].algo;
    plan.ok = true;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    OSP_CUDA_CHECK(cudaStreamIsCapturing(stream_, &cap));
    if (gemm_mode() != GemmMode::LtTuned || cap != cudaStreamCaptureStatusNone || M > kLtTuneMaxRows) return;
    int type = 0;
    OSP_CUBLAS_CHECK(cublasLtMatrixLayoutGetAttribute(plan.a, CUBLASLT_MATRIX_LAYOUT_TYPE, &type, sizeof(type),
                                                      nullptr));
    const PlanKey bucket{type, m_bucket(M), N, K};
    if (auto it = tuned_.find(bucket); it != tuned_.end()) {
        cublasLtMatmulHeuristicResult_t check{};
        if (cublasLtMatmulAlgoCheck(lt_, plan.desc, plan.a, plan.b, plan.c, plan.c, &it->second, &check) ==
                CUBLAS_STATUS_SUCCESS &&
            check.workspaceSize <= ws) {
            plan.algo = it->second;
            return;
        }
    }
    // Each timed run starts with the weights out of L2, as in a decode step (which streams every layer's weights
    // once): a write of twice the L2 size between runs evicts them. Timed with L2 warm, small-N shapes (whose
    // weights fit in L2) would favour algorithms that lose in the real step.
    int l2_bytes = 0, dev = 0;
    OSP_CUDA_CHECK(cudaGetDevice(&dev));
    OSP_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, dev));
    const size_t flush_bytes = size_t(std::max(l2_bytes, 1 << 20)) * 2;
    void* flush = nullptr;
    if (cudaMalloc(&flush, flush_bytes) != cudaSuccess) {
        cudaGetLastError();
        return;  // no room for the flush area: keep the heuristic's first choice
    }
    const float one = 1.0f, zero = 0.0f;
    constexpr int reps = 5;
    cudaEvent_t ev[2 * reps];
    for (auto& e : ev) OSP_CUDA_CHECK(cudaEventCreate(&e));
    float best_ms = 0.0f, first_ms = 0.0f;
    int best = 0;
    for (int i = 0; i < n_res; i++) {
        if (res[i].workspaceSize > ws) continue;
        auto once = [&] {
            return cublasLtMatmul(lt_, plan.desc, &one, w, plan.a, xh, plan.b, &zero, out, plan.c, out, plan.c,
                                  &res[i].algo, workspace_, ws, stream_);
        };
        if (once() != CUBLAS_STATUS_SUCCESS) continue;
        for (int r = 0; r < reps; r++) {
            OSP_CUDA_CHECK(cudaMemsetAsync(flush, r, flush_bytes, stream_));
            OSP_CUDA_CHECK(cudaEventRecord(ev[2 * r], stream_));
            once();
            OSP_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1], stream_));
        }
        OSP_CUDA_CHECK(cudaEventSynchronize(ev[2 * reps - 1]));
        float ms = 0.0f;
        for (int r = 0; r < reps; r++) {
            float t = 0.0f;
            OSP_CUDA_CHECK(cudaEventElapsedTime(&t, ev[2 * r], ev[2 * r + 1]));
            ms += t;
        }
        if (first_ms == 0.0f) first_ms = best_ms = ms, best = i;  // the first candidate that ran
        else if (ms < best_ms && ms < first_ms * 0.97f) best_ms = ms, best = i;
    }
    for (auto& e : ev) cudaEventDestroy(e);
    OSP_CUDA_CHECK(cudaStreamSynchronize(stream_));
    cudaFree(flush);
    plan.algo = res[best].algo;
    tuned_[bucket] = plan.algo;
    if (gemm_log()) {
        int tile = 0, stages = 0, splitk = 0, red = 0, algo_id = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&plan.algo, CUBLASLT_ALGO_CONFIG_ID, &algo_id, sizeof(algo_id), nullptr);
        cublasLtMatmulAlgoConfigGetAttribute(&plan.algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile), nullptr);
        cublasLtMatmulAlgoConfigGetAttribute(&plan.algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages),
                                             nullptr);
        cublasLtMatmulAlgoConfigGetAttribute(&plan.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof(splitk),
                                             nullptr);
        cublasLtMatmulAlgoConfigGetAttribute(&plan.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof(red),
                                             nullptr);
        std::fprintf(stderr,
                     "gemm tune M=%ld (bucket %ld) N=%ld K=%ld: %d candidates, first %.1f us, chose #%d %.1f us "
                     "(algo %d tile %d stages %d split-k %d reduction %d)\n",
                     long(M), long(m_bucket(M)), long(N), long(K), n_res, first_ms * 200.0f, best, best_ms * 200.0f,
                     algo_id, tile, stages, splitk, red);
    }
}

bool Gemm::run_lt(float* out, const void* xh, cudaDataType type, const void* w, int64_t M, int64_t N, int64_t K) {
    LtPlan& plan = lt_plan(type, M, N, K);
    if (!plan.ok) {
        lt_choose(plan, out, xh, w, M, N, K);
        if (!plan.ok) return false;
    }
    const float one = 1.0f, zero = 0.0f;
    OSP_CUBLAS_CHECK(cublasLtMatmul(lt_, plan.desc, &one, w, plan.a, xh, plan.b, &zero, out, plan.c, out, plan.c,
                                    &plan.algo, workspace_, kCublasWorkspaceBytes, stream_));
    return true;
}

}  // namespace osprey::backend::cuda
