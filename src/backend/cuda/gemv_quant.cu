// Small-batch matrix-vector kernels. Plain types: one warp per weight row; each lane walks the row in 16-byte
// vectors, lane, lane + 32, ..., with several loads in flight, converts them once and multiplies them with up to MR
// rows of x; long rows (not gated pairs) take one block per row instead (gemv_plain.cuh, plain_block_rows). Block
// types: rows of whole 16-byte vectors take the tiled path of gemv_blocks.cuh (tiled_rows() rows per warp streamed
// through shared memory); other rows one warp per row in 8-element groups (dequant8). One launch covers up to
// kMaxGemvJobs weights of one dtype that read the same x (q/k/v; launch_gemv_multi groups them by dtype), or a gate
// and an up weight whose rows are combined as act(gate) * up (the gated feed-forward input).
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv_blocks.cuh"
#include "backend/cuda/gemv_int.cuh"
#include "backend/cuda/gemv_plain.cuh"
#include "backend/cuda/gemv_quant.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kUnroll = 4;  // 8-element groups (or 16-byte vectors) each lane has in flight per step

// acc[r] += dot(weight row, x row r) over K, per lane (block types: 8-element groups).
template <DType DT, int MR>
__device__ __forceinline__ void row_dot_blocks(const uint8_t* row, const float* xr, int64_t K, int n_rows, int lane,
                                               float (&acc)[MR]) {
    pdl_wait();
    const int64_t n_groups = K / 8;
    for (int64_t g0 = lane; g0 < n_groups; g0 += 32 * kUnroll) {
        float wv[kUnroll][8];
#pragma unroll
        for (int u = 0; u < kUnroll; u++)
            if (g0 + 32 * u < n_groups) dequant8<DT>(row, g0 + 32 * u, wv[u]);
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t g = g0 + 32 * u;
            if (g >= n_groups) break;
#pragma unroll
            for (int r = 0; r < MR; r++) {
                if (r < n_rows) {
                    const float* xp = xr + r * K + 8 * g;
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r] = fmaf(wv[u][i], __ldg(xp + i), acc[r]);
                }
            }
        }
    }
}

// Plain F32 / F16 / BF16 rows of whole 16-byte vectors: kUnroll 16-byte loads in flight per lane (evict-first:
// the weights are read once per step; 8 and 16 measured 5% and 10% slower on H200 8B decode), x through the
// read-only cache. Requires 16-byte aligned rows and x. The first loads are issued before pdl_wait(): launched as a
// programmatic dependent, the kernel streams weights while the kernel that wrote x finishes (+1.5% decode).
template <DType DT, int MR>
__device__ __forceinline__ void row_dot_vec(const uint8_t* row_bytes_ptr, const float* xr, int64_t K, int n_rows,
                                            int lane, float (&acc)[MR]) {
    constexpr int kPer = DT == DType::F32 ? 4 : 8;  // elements per 16-byte vector
    const uint4* row = reinterpret_cast<const uint4*>(row_bytes_ptr);
    const int64_t n_vec = K / kPer;
    uint4 wv[kUnroll];
    auto load = [&](int64_t v0) {
#pragma unroll
        for (int u = 0; u < kUnroll; u++)
            if (v0 + 32 * u < n_vec) wv[u] = __ldcs(row + v0 + 32 * u);
    };
    load(lane);
    pdl_wait();
    for (int64_t v0 = lane; v0 < n_vec; v0 += 32 * kUnroll) {
        if (v0 != lane) load(v0);
#pragma unroll
        for (int u = 0; u < kUnroll; u++) {
            const int64_t v = v0 + 32 * u;
            if (v >= n_vec) break;
            vec_fma<DT, MR>(wv[u], xr, K, v, n_rows, acc);
        }
    }
}

// Plain rows that are not whole aligned 16-byte vectors: element-wise loads.
template <DType DT, int MR>
__device__ __forceinline__ void row_dot_any(const uint8_t* row, const float* xr, int64_t K, int n_rows, int lane,
                                            float (&acc)[MR]) {
    pdl_wait();
    for (int64_t e = lane; e < K; e += 32) {
        const float wv = load1<DT>(row, e);
#pragma unroll
        for (int r = 0; r < MR; r++)
            if (r < n_rows) acc[r] = fmaf(wv, xr[r * K + e], acc[r]);
    }
}

enum class RowPath { Blocks, Tiled, Vec, Any };

template <DType DT, int MR, RowPath P>
__device__ __forceinline__ void row_dot(const uint8_t* row, const float* xr, int64_t K, int n_rows, int lane,
                                        float (&acc)[MR]) {
    if constexpr (P == RowPath::Blocks) row_dot_blocks<DT, MR>(row, xr, K, n_rows, lane, acc);
    else if constexpr (P == RowPath::Vec) row_dot_vec<DT, MR>(row, xr, K, n_rows, lane, acc);
    else row_dot_any<DT, MR>(row, xr, K, n_rows, lane, acc);
}

template <int MR>
__device__ __forceinline__ void warp_reduce(float (&acc)[MR]) {
#pragma unroll
    for (int r = 0; r < MR; r++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
}

// out_j[m, n] = x[m] . w_j[n] for every row of every job (one warp per row).
template <DType DT, int MR, RowPath P>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
gemv_kernel(GemvBatch b, const float* __restrict__ x, int64_t M, int64_t K, size_t row_bytes) {
    pdl_release();  // the next product may start its loads
    const int lane = threadIdx.x & 31;
    const int64_t g = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (g >= b.first_row[b.n_jobs]) return;
    int j = 0;
    while (g >= b.first_row[j + 1]) j++;
    const int64_t n = g - b.first_row[j], N = b.n[j];
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    float acc[MR];
#pragma unroll
    for (int r = 0; r < MR; r++) acc[r] = 0.0f;
    row_dot<DT, MR, P>(b.w[j] + size_t(n) * row_bytes, x + m0 * K, K, n_rows, lane, acc);
    warp_reduce(acc);
#pragma unroll
    for (int r = 0; r < MR; r++)
        if (lane == 0 && r < n_rows) b.out[j][(m0 + r) * N + n] = acc[r];
}

// act(g) as activation.cu computes it: SiLU or tanh-GELU.
template <bool kSilu>
__device__ __forceinline__ float gate_act(float g) {
    if constexpr (kSilu) {
        return g / (1.0f + expf(-g));
    } else {
        constexpr float kC = 0.7978845608028654f;
        return g / (1.0f + expf(-2.0f * kC * (g + 0.044715f * g * g * g)));
    }
}

// out[m, n] = act(x[m] . gate[n]) * (x[m] . up[n]): the two dot products exactly as gemv_kernel computes them and
// the activation as activation.cu computes it.
template <DType DT, int MR, RowPath P, bool kSilu>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
gemv_gated_kernel(float* __restrict__ out, const uint8_t* __restrict__ wg, const uint8_t* __restrict__ wu,
                  const float* __restrict__ x, int64_t M, int64_t N, int64_t K, size_t row_bytes) {
    pdl_release();
    const int lane = threadIdx.x & 31;
    const int64_t n = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    if (n >= N) return;
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    float ag[MR], au[MR];
#pragma unroll
    for (int r = 0; r < MR; r++) ag[r] = au[r] = 0.0f;
    row_dot<DT, MR, P>(wg + size_t(n) * row_bytes, x + m0 * K, K, n_rows, lane, ag);
    row_dot<DT, MR, P>(wu + size_t(n) * row_bytes, x + m0 * K, K, n_rows, lane, au);
    warp_reduce(ag);
    warp_reduce(au);
#pragma unroll
    for (int r = 0; r < MR; r++) {
        if (lane == 0 && r < n_rows) {
            out[(m0 + r) * N + n] = gate_act<kSilu>(ag[r]) * au[r];
        }
    }
}

unsigned row_groups(int64_t M) { return unsigned((M + kGemvMaxRows - 1) / kGemvMaxRows); }

constexpr int kTiledWarps = 4;  // warps per block of the tiled block-type kernels

template <int RW, int MR>
__device__ __forceinline__ void zero_acc(float (&acc)[RW][MR]) {
#pragma unroll
    for (int rw = 0; rw < RW; rw++)
#pragma unroll
        for (int r = 0; r < MR; r++) acc[rw][r] = 0.0f;
}

// The tiled rows' dot products against x rows m0, m0 + 1, ...: X is const float* (f32 x, gemv_blocks.cuh) or
// XQuant (x quantized for the integer path of gemv_int.cuh).
template <DType DT, int MR, int RW, typename X>
__device__ __forceinline__ void tiled_rows_dot(const uint8_t* const (&rows)[RW], const X& x, int64_t m0, int64_t K,
                                               int n_rows, int lane, uint4* sm, float (&acc)[RW][MR]) {
    if constexpr (std::is_same_v<X, XQuant>) rows_dot_int<DT, MR, RW>(rows, x.rows_from(m0), K, n_rows, lane, sm, acc);
    else rows_dot_tiled<DT, MR, RW>(rows, x + m0 * K, K, n_rows, lane, sm, acc);
}

// gemv_kernel for block types on the tiled path: RW consecutive rows of the batch per warp.
template <DType DT, int MR, int RW, typename X>
__global__ void __launch_bounds__(kTiledWarps * 32)
gemv_tiled_kernel(GemvBatch b, X x, int64_t M, int64_t K, size_t row_bytes) {
    extern __shared__ uint4 gemv_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t total = b.first_row[b.n_jobs];
    const int64_t g0 = (int64_t(blockIdx.x) * kTiledWarps + warp) * RW;
    if (g0 >= total) return;
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    const uint8_t* rows[RW];
    int job[RW];
    int64_t nn[RW];
#pragma unroll
    for (int rw = 0; rw < RW; rw++) {  // rows past the end repeat the last row and are not written
        const int64_t g = g0 + rw < total ? g0 + rw : total - 1;
        int j = 0;
        while (g >= b.first_row[j + 1]) j++;
        job[rw] = j, nn[rw] = g - b.first_row[j];
        rows[rw] = b.w[j] + size_t(nn[rw]) * row_bytes;
    }
    float acc[RW][MR];
    zero_acc(acc);
    tiled_rows_dot<DT, MR, RW>(rows, x, m0, K, n_rows, lane, gemv_smem + warp * (gemv_warp_smem<DT, RW>() / 16), acc);
#pragma unroll
    for (int rw = 0; rw < RW; rw++) warp_reduce(acc[rw]);
    if (lane == 0) {
#pragma unroll
        for (int rw = 0; rw < RW; rw++) {
            if (g0 + rw >= total) break;
            const int j = job[rw];
#pragma unroll
            for (int r = 0; r < MR; r++)
                if (r < n_rows) b.out[j][(m0 + r) * b.n[j] + nn[rw]] = acc[rw][r];
        }
    }
}

// gemv_gated_kernel on the tiled path: RW / 2 outputs per warp, rows (gate n, up n, gate n + 1, up n + 1, ...).
template <DType DT, int MR, int RW, bool kSilu, typename X>
__global__ void __launch_bounds__(kTiledWarps * 32)
gemv_gated_tiled_kernel(float* __restrict__ out, const uint8_t* __restrict__ wg, const uint8_t* __restrict__ wu, X x,
                        int64_t M, int64_t N, int64_t K, size_t row_bytes) {
    constexpr int kOut = RW / 2;
    extern __shared__ uint4 gemv_smem[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t n0 = (int64_t(blockIdx.x) * kTiledWarps + warp) * kOut;
    if (n0 >= N) return;
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    const uint8_t* rows[RW];
#pragma unroll
    for (int p = 0; p < kOut; p++) {
        const int64_t n = n0 + p < N ? n0 + p : N - 1;
        rows[2 * p] = wg + size_t(n) * row_bytes, rows[2 * p + 1] = wu + size_t(n) * row_bytes;
    }
    float acc[RW][MR];
    zero_acc(acc);
    tiled_rows_dot<DT, MR, RW>(rows, x, m0, K, n_rows, lane, gemv_smem + warp * (gemv_warp_smem<DT, RW>() / 16), acc);
#pragma unroll
    for (int rw = 0; rw < RW; rw++) warp_reduce(acc[rw]);
    if (lane == 0) {
#pragma unroll
        for (int p = 0; p < kOut; p++) {
            if (n0 + p >= N) break;
#pragma unroll
            for (int r = 0; r < MR; r++)
                if (r < n_rows) out[(m0 + r) * N + n0 + p] = gate_act<kSilu>(acc[2 * p][r]) * acc[2 * p + 1][r];
        }
    }
}

// Weight rows per warp on the tiled path: 4, but 2 for Q6_K and Q8_0, whose larger tiles (1,680 and 1,088 bytes per
// row) leave fewer warps resident per SM (shared memory): H200 8B decode Q4_K_M 301 -> 308.5 tok/s with 2 for
// Q6_K (the down product 32.6 -> 28.5 us; also 2 for Q4_K: no change), Q8_0 274 -> 278.5 (session 7). The integer
// path at M = 1 was measured with (rows, stages) = (4, 3) against (4, 4), (4, 6), (4, 8), (8, 3), (8, 4): every
// other pair was slower (Q4_K_M 268 against 264, 246, 228, 234, 206 tok/s; Q8_0 and Q4_0 alike, session 3).
// Splitting K over 2 or 4 warps of a block (4x the warps for the 4,096-row products) was no faster: Q4_K_M 302 /
// 300 / 269, Q8_0 271 / 275 / 238 tok/s for 1 / 2 / 4 warps per row group (session 7). A row's sums do not depend
// on the rows that share its warp, so this choice keeps every result's bits.
template <DType DT>
constexpr int tiled_rows() {
    return DT == DType::Q6_K || DT == DType::Q8_0 ? 2 : 4;
}

// Whether plain (F32 / F16 / BF16, aligned) rows of n_vec 16-byte vectors take the block kernel of gemv_plain.cuh
// rather than one warp per row: rows of more than kPlainLoads / 2 vectors per thread (K > 8192 at bf16; the 8B's
// down product: 29 vs 36 us, 4.0 vs 3.2 TB/s); never the gated pair (one warp per gate/up pair reads 4.1 TB/s, the
// block kernel 3.4-3.7). At K = 4096 the block kernel is faster in isolation (q/k/v 16.4 vs 18.8 us) but the decode
// step was slower with it (docs/performance.md). OSPREY_GEMV_PLAIN=warp: one warp per row throughout (comparisons).
bool plain_block_rows(int64_t n_vec) {
    static const bool warp_only = [] {
        const char* e = std::getenv("OSPREY_GEMV_PLAIN");
        return e != nullptr && std::string(e) == "warp";
    }();
    return !warp_only && (n_vec + kPlainThreads - 1) / kPlainThreads * 2 > kPlainLoads;
}

// The quantized-x area of one (device, stream); never freed (a process-lifetime cache). It only grows (get()
// synchronizes and bumps scratch_epoch() then), so a captured decode step finds the size its eager run set.
XQuant quantize_x(const float* x, int64_t M, int64_t K, cudaStream_t stream) {
    static std::mutex mu;
    static auto* areas = new std::map<std::pair<int, cudaStream_t>, DeviceScratch>();
    int device = 0;
    cudaGetDevice(&device);
    size_t off[3];
    const size_t bytes = xquant_bytes(M, K, off);
    char* base = nullptr;
    {
        const std::lock_guard<std::mutex> lock(mu);
        base = static_cast<char*>((*areas)[{device, stream}].get(bytes, stream));
    }
    auto* q = reinterpret_cast<int16_t*>(base + off[0]);
    auto* d = reinterpret_cast<float*>(base + off[1]);
    auto* s = reinterpret_cast<int32_t*>(base + off[2]);
    const int64_t n8 = M * K / 8;
    launch_kernel(quantize_x_kernel, dim3(unsigned((n8 + 255) / 256)), 256, 0, stream, pdl_enabled(PdlKind::Gemv), x, q,
                  d, s, n8, K);
    return XQuant{q, d, s, K};
}

template <DType DT, int MR, typename X>
void launch_tiled(const GemvBatch& b, const X& x, int64_t M, int64_t K, size_t row_bytes, cudaStream_t stream) {
    constexpr int RW = tiled_rows<DT>();
    const int64_t per_block = int64_t(kTiledWarps) * RW;
    const dim3 grid(unsigned((b.first_row[b.n_jobs] + per_block - 1) / per_block), row_groups(M));
    const size_t smem = size_t(kTiledWarps) * gemv_warp_smem<DT, RW>() + 16;
    launch_kernel(gemv_tiled_kernel<DT, MR, RW, X>, grid, kTiledWarps * 32, smem, stream,
                  std::is_same_v<X, XQuant> && pdl_enabled(PdlKind::Gemv), b, x, M, K, row_bytes);
}

template <DType DT, int MR, typename X>
void launch_gated_tiled(float* out, const uint8_t* wg, const uint8_t* wu, const X& x, int64_t M, int64_t N,
                        int64_t K, size_t row_bytes, bool silu, cudaStream_t stream) {
    constexpr int RW = tiled_rows<DT>();
    const int64_t per_block = int64_t(kTiledWarps) * (RW / 2);
    const dim3 grid(unsigned((N + per_block - 1) / per_block), row_groups(M));
    const size_t smem = size_t(kTiledWarps) * gemv_warp_smem<DT, RW>() + 16;
    const bool pdl = std::is_same_v<X, XQuant> && pdl_enabled(PdlKind::Gemv);
    if (silu)
        launch_kernel(gemv_gated_tiled_kernel<DT, MR, RW, true, X>, grid, kTiledWarps * 32, smem, stream, pdl, out, wg,
                      wu, x, M, N, K, row_bytes);
    else
        launch_kernel(gemv_gated_tiled_kernel<DT, MR, RW, false, X>, grid, kTiledWarps * 32, smem, stream, pdl, out,
                      wg, wu, x, M, N, K, row_bytes);
}

template <DType DT>
RowPath row_path(const GemvBatch& b, const float* x, int64_t K) {
    if constexpr (DT == DType::F32 || DT == DType::F16 || DT == DType::BF16) {
        constexpr int kPer = DT == DType::F32 ? 4 : 8;
        uintptr_t bits = reinterpret_cast<uintptr_t>(x);
        for (int j = 0; j < b.n_jobs; j++) bits |= reinterpret_cast<uintptr_t>(b.w[j]);
        return K % kPer == 0 && bits % 16 == 0 ? RowPath::Vec : RowPath::Any;
    } else {
        // Tiled: rows of whole 16-byte vectors, 16-byte aligned weights and x.
        uintptr_t bits = reinterpret_cast<uintptr_t>(x);
        for (int j = 0; j < b.n_jobs; j++) bits |= reinterpret_cast<uintptr_t>(b.w[j]);
        const bool aligned = dtype_row_bytes(DT, K) % 16 == 0 && bits % 16 == 0;
        return aligned ? RowPath::Tiled : RowPath::Blocks;
    }
}

// Calls f.template operator()<MR, P>() with the row group MR covering M (the fewest of 1, 2, 4, so w is read once
// for M <= kGemvMaxRows) and the row path.
template <DType DT, typename F>
void dispatch_rows(int64_t M, RowPath p, F&& f) {
    auto with_path = [&]<int MR>() {  // only the paths a dtype can take are instantiated
        if constexpr (DT == DType::F32 || DT == DType::F16 || DT == DType::BF16) {
            if (p == RowPath::Vec) f.template operator()<MR, RowPath::Vec>();
            else f.template operator()<MR, RowPath::Any>();
        } else {
            if (p == RowPath::Tiled) f.template operator()<MR, RowPath::Tiled>();
            else f.template operator()<MR, RowPath::Blocks>();
        }
    };
    if (M == 1) with_path.template operator()<1>();
    else if (M == 2) with_path.template operator()<2>();
    else with_path.template operator()<kGemvMaxRows>();
}

// The jobs of one dtype (b) in one launch; x quantized for the integer path at most once per launch_gemv_multi
// (xq: empty until a launch needs it).
void launch_gemv_batch(const GemvBatch& b, DType w_dtype, const float* x, int64_t M, int64_t K,
                       std::optional<XQuant>& xq, cudaStream_t stream) {
    const int n_jobs = b.n_jobs;
    const unsigned gx = unsigned((b.first_row[n_jobs] + kWarpsPerBlock - 1) / kWarpsPerBlock);
    dispatch_weight_dtype(w_dtype, [&]<DType DT>() {
        const size_t row_bytes = dtype_row_bytes(DT, K);
        dispatch_rows<DT>(M, row_path<DT>(b, x, K), [&]<int MR, RowPath P>() {
            if constexpr (P == RowPath::Tiled && int_dot_dtype<DT>()) {
                if (!xq) xq = quantize_x(x, M, K, stream);
                launch_tiled<DT, MR>(b, *xq, M, K, row_bytes, stream);
            } else if constexpr (P == RowPath::Tiled)
                launch_tiled<DT, MR>(b, x, M, K, row_bytes, stream);
            else if constexpr (P == RowPath::Vec) {
                constexpr int kPer = DT == DType::F32 ? 4 : 8;
                if (plain_block_rows(K / kPer))
                    launch_kernel(gemv_plain_kernel<DT, MR>, dim3(unsigned(b.first_row[n_jobs]), row_groups(M)),
                                  kPlainThreads, 0, stream, pdl_enabled(PdlKind::Gemv), b, x, M, K, row_bytes);
                else
                    launch_kernel(gemv_kernel<DT, MR, P>, dim3(gx, row_groups(M)), kWarpsPerBlock * 32, 0, stream,
                                  pdl_enabled(PdlKind::Gemv), b, x, M, K, row_bytes);
            } else
                launch_kernel(gemv_kernel<DT, MR, P>, dim3(gx, row_groups(M)), kWarpsPerBlock * 32, 0, stream,
                              pdl_enabled(PdlKind::Gemv), b, x, M, K, row_bytes);
        });
    });
}

}  // namespace

bool gemv_supported(DType w_dtype) {
    return kernel_weight_dtype(w_dtype);
}

void launch_gemv_multi(const GemvJob* jobs, int n_jobs, const float* x, int64_t M, int64_t K, cudaStream_t stream) {
    if (M <= 0) return;
    std::optional<XQuant> xq;
    bool launched[kMaxGemvJobs] = {};
    for (int i = 0; i < n_jobs; i++) {  // one launch per dtype, in the order of each dtype's first job
        if (launched[i]) continue;
        GemvBatch b{};
        b.first_row[0] = 0;
        for (int j = i; j < n_jobs; j++) {
            if (launched[j] || jobs[j].dtype != jobs[i].dtype || jobs[j].n <= 0) continue;
            const int k = b.n_jobs++;
            b.w[k] = static_cast<const uint8_t*>(jobs[j].w);
            b.out[k] = jobs[j].out;
            b.n[k] = jobs[j].n;
            b.first_row[k + 1] = b.first_row[k] + jobs[j].n;
            launched[j] = true;
        }
        if (b.n_jobs > 0) launch_gemv_batch(b, jobs[i].dtype, x, M, K, xq, stream);
    }
}

void launch_gemv(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K,
                 cudaStream_t stream) {
    const GemvJob job{w, out, N, w_dtype};
    launch_gemv_multi(&job, 1, x, M, K, stream);
}

void launch_gemv_gated(float* out, const float* x, DType w_dtype, const void* w_gate, const void* w_up, int64_t M,
                       int64_t N, int64_t K, bool silu, cudaStream_t stream) {
    if (N <= 0 || M <= 0) return;
    GemvBatch b{};  // for the row-path check only
    b.n_jobs = 2;
    b.w[0] = static_cast<const uint8_t*>(w_gate), b.w[1] = static_cast<const uint8_t*>(w_up);
    const unsigned gx = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
    dispatch_weight_dtype(w_dtype, [&]<DType DT>() {
        const size_t row_bytes = dtype_row_bytes(DT, K);
        dispatch_rows<DT>(M, row_path<DT>(b, x, K), [&]<int MR, RowPath P>() {
            const dim3 grid(gx, row_groups(M));
            if constexpr (P == RowPath::Tiled && int_dot_dtype<DT>())
                launch_gated_tiled<DT, MR>(out, b.w[0], b.w[1], quantize_x(x, M, K, stream), M, N, K, row_bytes, silu,
                                           stream);
            else if constexpr (P == RowPath::Tiled)
                launch_gated_tiled<DT, MR>(out, b.w[0], b.w[1], x, M, N, K, row_bytes, silu, stream);
            else if (silu)
                launch_kernel(gemv_gated_kernel<DT, MR, P, true>, grid, kWarpsPerBlock * 32, 0, stream,
                              pdl_enabled(PdlKind::Gemv), out, b.w[0], b.w[1], x, M, N, K, row_bytes);
            else
                launch_kernel(gemv_gated_kernel<DT, MR, P, false>, grid, kWarpsPerBlock * 32, 0, stream,
                              pdl_enabled(PdlKind::Gemv), out, b.w[0], b.w[1], x, M, N, K, row_bytes);
        });
    });
}

}  // namespace osprey::backend::cuda
