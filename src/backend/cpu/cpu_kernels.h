// CPU kernels: scalar references (*_ref) and the per-ISA kernel table chosen at run time.
//
// Quantized matmul works on a quantized copy of the activation rows (QuantAct): each row of x is quantized once
// per matmul call to int8 with one f32 scale per 32 elements (weights Q4_0..Q8_0) or per 256 elements (k-quants),
// then every output is an integer dot product per block scaled in f32 (ggml's vec_dot scheme).
// Batch invariance: a row kernel computes out[m, n] with the same operations whatever the number of rows it is
// given, so out[m, n] never depends on M or on the row tile m falls in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/quant_blocks.h"

namespace osprey::backend::cpu {

enum class Isa { Scalar, Avx2, Avx512 };
const char* isa_name(Isa isa);

// ---- scalar references (quant_ref.cpp) ----
// y[0..n) = dequantized row x of dtype; n a multiple of the block size.
void dequantize_row_ref(DType dtype, const void* x, float* y, int64_t n);
bool dequantize_supported(DType dtype);
// Reference quantizers (tests and tools): x[0..n) -> whole blocks of dtype. Supported: Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q8_K, Q4_K, Q6_K, F16, BF16, F32.
void quantize_row_ref(DType dtype, const float* x, void* y, int64_t n);
bool quantize_supported(DType dtype);
// ggml-layout activation quantizers.
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);

// ---- quantized activations ----
enum class ActKind { F32, Q8_32, Q8_256 };
ActKind act_kind(DType weight_dtype);

// Activations are quantized in two int8 terms per block: x ~= d * (256 * hi + lo), where hi is x quantized to
// int8 with the block's amax scale (256 * d = amax / 127) and lo is the residual x - 256 d hi quantized with the
// fixed finer scale d (|lo| <= 128, saturated to +-127 so sign flips stay in int8). Together they are a 16-bit quantization of x (error
// ~amax / 65000) that the integer kernels consume as two int8 vectors sharing one weight unpack:
// dot(w, x) = d * (256 * dot(w, hi) + dot(w, lo)).
// Row r: qs / ql [K] int8 (hi / lo), d [K/32 or K/256] f32 (the unit scale above), s [K/32] f32
// (d * (256 * sum hi + sum lo) over the block, Q8_32 only), bsums / bsums_lo [K/16] int16 (sums of 16 hi / lo,
// Q8_256 only).
struct QuantAct {
    int64_t k = 0;
    const float* xf = nullptr;      // F32: the rows of x themselves, stride k
    int8_t* qs = nullptr;
    int8_t* ql = nullptr;
    float* d = nullptr;
    float* s = nullptr;
    int16_t* bsums = nullptr;
    int16_t* bsums_lo = nullptr;
    float* d8 = nullptr;  // Q8_32: each d repeated 8 times (d8[row * 8 * d_stride + 8 * b + i] = d[b]), for SIMD lanes
    float* s8 = nullptr;  // Q8_32: each s / 8 repeated 8 times (s8[row * 8 * s_stride + 8 * b + i] = s[b] / 8)
    int64_t qs_stride = 0, d_stride = 0, s_stride = 0, bsums_stride = 0;  // in elements (ql, bsums_lo alike)
};

// Quantize x[0..k) into row `row` of act (both terms): per-32 blocks (Q8_32) or per-256 blocks (Q8_256). Every
// ISA produces bit-identical qs/ql/d/s/bsums: with D = amax / 127 and iD = 1 / D (0 when D = 0),
// hi = round_even(x * iD), r = fma(-D, hi, x), lo = clamp(round_even(r * (256 * iD)), -127, 127), d = D / 256.
using QuantizeActFn = void (*)(const float* x, const QuantAct& act, int64_t row);

// Row kernel: for r in [0, n_rows): out[r * out_stride] = dot(act row (m0 + r), w_row); n_rows in 1..kMaxRows.
constexpr int kMaxRows = 4;
using RowsDotFn = void (*)(int n_rows, const QuantAct& act, int64_t m0, const void* w_row, float* out,
                           int64_t out_stride);

// Tile kernel (float weights, or 32-element block types): out[r * out_stride + j] = dot(act row (m0 + r), weight row j at
// w + j * row_bytes) for r < n_rows <= kTileRows, j < n_w <= kTileCols; each (r, j) computed exactly as with
// n_rows = n_w = 1.
constexpr int kTileRows = 4, kTileCols = 4;
using TileDotFn = void (*)(int n_rows, int n_w, const QuantAct& act, int64_t m0, const void* w, size_t row_bytes,
                           float* out, int64_t out_stride);

// Panel kernel (F16 or BF16 weights repacked as panels of 16 weight rows, panel p = [K][16] at panels + p * K * 16):
// out[r * out_stride + c] = sum over k of x[r * K + k] * w[c, k] for r < n_rows <= kPanelRows, c < n_cols <=
// 16 * n_panels (n_panels <= kPanelCount), accumulated in f32 by one fma per k in order k = 0, 1, ..., K - 1 from
// 0: the same arithmetic for every output whatever n_rows, n_panels or the thread (batch-invariant).
constexpr int kPanelRows = 8, kPanelCount = 3;
// The same signature serves every panel layout (panels: the layout's first panel of the call).
using PanelFn = void (*)(int n_rows, int n_panels, const float* x, int64_t K, const void* panels, float* out,
                         int64_t out_stride, int n_cols);
// [N, K] 16-bit rows (f16 or bf16) -> panels of 16 rows (the last one zero-padded):
// dst[((n / 16) * K + k) * 16 + n % 16] = w[n, k].
void pack_16bit_panels(const uint16_t* w, int64_t N, int64_t K, uint16_t* dst);
// Q8_0 rows in panels of 16 rows: per panel, per 32-element block, the 16 rows' f16 scales then the 32 x 16 codes
// (k-major, 16 rows per k); the last panel zero-padded. A weight is code * scale, exact in f32.
constexpr int64_t kQ8PanelBlockBytes = 16 * 2 + 32 * 16;
void pack_q8_0_panels(const BlockQ8_0* w, int64_t N, int64_t K, uint8_t* dst);
// Bytes of a prepared matrix in panels (F16, BF16 or Q8_0; 0 for other types).
int64_t panel_bytes(DType dtype, int64_t N, int64_t K);
// n_panels Q8_0 panels -> f32 panels [n_panels][K][16] (a product with many rows unpacks its chunk once).
using UnpackQ8PanelsFn = void (*)(const uint8_t* panels, int n_panels, int64_t K, float* dst);

struct CpuKernels {
    Isa isa = Isa::Scalar;
    QuantizeActFn quantize_q8_32 = nullptr;
    QuantizeActFn quantize_q8_256 = nullptr;
    RowsDotFn rows_dot[kNumDTypes] = {};  // by weight dtype; null: unsupported
    TileDotFn tile_dot[kNumDTypes] = {};  // optional: preferred over rows_dot when set
    // Optional (all or none): F16 / BF16 / Q8_0 weights the backend repacked in panels (prepare_matrix).
    // panel_q8_0 widens and scales the codes in registers; panel_f32 runs over unpacked panels. All four add one fma
    // per k in order, so a row's result does not depend on which of them computed it.
    PanelFn panel_f16 = nullptr;
    PanelFn panel_bf16 = nullptr;
    PanelFn panel_q8_0 = nullptr;
    PanelFn panel_f32 = nullptr;
    UnpackQ8PanelsFn unpack_q8_0_panels = nullptr;
    // Attention primitives (n elements): dot of f32 q with a K row; y += a * V row.
    float (*dot_f32)(const float* a, const float* b, int64_t n) = nullptr;
    float (*dot_f16)(const float* a, const uint16_t* b, int64_t n) = nullptr;
    void (*axpy_f32)(float* y, float a, const float* x, int64_t n) = nullptr;
    void (*axpy_f16)(float* y, float a, const uint16_t* x, int64_t n) = nullptr;
    // Over n context rows of hd elements at element offsets offs[j] of base (f32, or f16 when f16):
    // scores[j] = dot(q, row j) * scale (the dot as dot_f32/dot_f16 computes it), and
    // out[i] = sum_j p[j] * row_j[i] accumulated in order of j (fma from 0, as repeated axpy would).
    void (*attn_scores)(const float* q, const void* base, bool f16, const int64_t* offs, int n, int hd, float scale,
                        float* scores) = nullptr;
    void (*attn_values)(float* out, const float* p, const void* base, bool f16, const int64_t* offs, int n,
                        int hd) = nullptr;
    // Optional: the same scores / values for g q heads that share one K/V head (q head h at q + h * hd, its scores
    // or weights at scores + h * stride, its output at out + h * hd), each K/V row read once for all of them.
    // Every head's results are bit-identical to attn_scores / attn_values on it alone.
    void (*attn_scores_group)(const float* q, int g, const void* base, bool f16, const int64_t* offs, int n, int hd,
                              float scale, float* scores, int64_t stride) = nullptr;
    void (*attn_values_group)(float* out, int g, const float* p, int64_t stride, const void* base, bool f16,
                              const int64_t* offs, int n, int hd) = nullptr;
    // dst[i] = x[i] rounded to f16 (nearest even, as fp32_to_fp16) for i < n: the KV cache write.
    void (*f32_to_f16)(uint16_t* dst, const float* x, int64_t n) = nullptr;
    // x[i] = exp(x[i] - mx) for i < n; returns their sum (fixed order for a given n).
    float (*exp_sub_sum)(float* x, int64_t n, float mx) = nullptr;
    // out[i] = act(g[i]) * u[i]; out may alias g.
    void (*silu_mul)(float* out, const float* g, const float* u, int64_t n) = nullptr;
    void (*gelu_tanh_mul)(float* out, const float* g, const float* u, int64_t n) = nullptr;
};

// Scalar kernels (always available) and the SIMD tables (null when not compiled/supported by the CPU).
void fill_scalar_kernels(CpuKernels& k);
void fill_avx2_kernels(CpuKernels& k);    // avx2/kernels_avx2.cpp
void fill_avx512_kernels(CpuKernels& k);  // avx512/kernels_avx512.cpp
// Best table for this CPU, capped by env OSPREY_CPU_ISA=scalar|avx2|avx512 (or by `max_isa` when given).
CpuKernels select_kernels(const char* forced_isa = nullptr);

// ---- reference ops (ops_ref.cpp): single-threaded, plain loops; the tests' independent references ----
// out[M, N] = x[M, K] . dequant(w)[N, K]^T in double, rounded to f32.
void matmul_ref(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K);
void rms_norm_ref(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps);
void rope_ref(float* x, const int32_t* positions, const float* inv_freq, int64_t n_tokens, const RopeParams& p);
float gelu_tanh_ref(float x);
float silu_ref(float x);

}  // namespace osprey::backend::cpu

// ---- multi-threaded drivers (matmul.cpp, attention.cpp) ----
namespace osprey {
class ThreadPool;
}

namespace osprey::backend::cpu {

// Reusable scratch for the quantized activations.
struct MatmulScratch {
    std::vector<int8_t> qs;
    std::vector<float> d, s, d8, s8;
    std::vector<int16_t> bsums;
};

// One weight of a multi-weight matmul: out [M, n] f32 = x . w [n, K]^T. panels: w repacked in panels (F16, BF16,
// Q8_0; see panel_bytes), or null.
struct MatmulJob {
    float* out;
    DType dtype;
    const void* w;
    int64_t n;
    const void* panels = nullptr;
};
constexpr int kMaxMatmulJobs = 4;

// out_j [M, n_j] f32 = x [M, K] f32 . w_j [n_j, K]^T for every job, in one parallel section (x quantized once per
// activation kind the unprepared weights need; w_j.dtype must have a rows_dot kernel). scratch: one per ActKind (3).
void matmul_driver_multi(ThreadPool& pool, const CpuKernels& k, MatmulScratch* scratch, const float* x, int64_t M,
                         int64_t K, const MatmulJob* jobs, int n_jobs);

void paged_attention_driver(ThreadPool& pool, const CpuKernels& k, float* out, const float* q, const KvLayerView& kv,
                            const AttentionBatch& batch, const AttentionParams& p);

// A CPU backend with a forced kernel table (tests, benchmarks): isa "scalar", "avx2", "avx512" or nullptr (best).
std::unique_ptr<Backend> make_cpu_backend_with_isa(int n_threads, const char* isa);

}  // namespace osprey::backend::cpu
