// The matmul driver: quantize the activation rows once, then split the output columns (in chunks of 16) into one
// contiguous share per thread, and tile rows x columns inside a chunk so a tile of weight rows stays in L1/L2 while row groups of x
// stream past it. Several weights that read the same x (q/k/v, gate/up) share one quantization and one parallel
// section. Every out[m, n] is computed by the same kernel with the same reduction order along K, whatever M is and
// whichever thread computes it.
//
// Activations are quantized in two int8 terms (QuantAct): x ~= d (256 hi + lo), a 16-bit quantization that keeps
// the integer kernels; each kernel unpacks a weight block once and takes both terms' dot products. One int8 term
// alone gives a mean KL near 2e-3 against the float32 reference on SmolLM2, two give ~1e-7.
//
// Weights the backend prepared in panels (F16, BF16, Q8_0: see cpu_kernels.h) skip the activation quantization:
// the panel kernels read x in f32 and multiply exact f32 weights, one fma per k in order.
#include <algorithm>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace osprey::backend::cpu {

namespace {
constexpr int64_t kRowTile = 64;              // rows of x per tile (prefill)
constexpr size_t kWeightTileBytes = 24 << 10;  // bytes of weight rows per tile
constexpr int64_t kChunkCols = 16;            // columns per work chunk (a multiple of 16: threads write whole cache lines)

// Quantizes x for one activation kind into `sc` and returns the view.
QuantAct quantize_activations(ThreadPool& pool, const CpuKernels& k, MatmulScratch& sc, ActKind kind, const float* x,
                              int64_t M, int64_t K) {
    QuantAct act;
    act.k = K;
    if (kind == ActKind::F32) {
        act.xf = x;
        return act;
    }
    const int64_t qs_stride = (K + 63) / 64 * 64;
    act.qs_stride = qs_stride;
    act.d_stride = kind == ActKind::Q8_32 ? K / 32 : K / kQK_K;
    act.s_stride = kind == ActKind::Q8_32 ? K / 32 : 0;
    act.bsums_stride = kind == ActKind::Q8_32 ? 0 : K / 16;
    sc.qs.resize(size_t(2 * M * qs_stride));
    sc.d.resize(size_t(M * act.d_stride));
    sc.s.resize(size_t(M * act.s_stride));
    sc.bsums.resize(size_t(2 * M * act.bsums_stride));
    act.qs = sc.qs.data();
    act.ql = sc.qs.data() + M * qs_stride;
    act.d = sc.d.data();
    if (kind == ActKind::Q8_32) {
        sc.d8.resize(size_t(8 * M * act.d_stride));
        sc.s8.resize(size_t(8 * M * act.s_stride));
        act.d8 = sc.d8.data();
        act.s8 = sc.s8.data();
    }
    act.s = act.s_stride ? sc.s.data() : nullptr;
    act.bsums = act.bsums_stride ? sc.bsums.data() : nullptr;
    act.bsums_lo = act.bsums_stride ? sc.bsums.data() + M * act.bsums_stride : nullptr;
    const QuantizeActFn quant = kind == ActKind::Q8_32 ? k.quantize_q8_32 : k.quantize_q8_256;
    auto quantize_rows = [&](int64_t b, int64_t e) {
        for (int64_t m = b; m < e; m++) {
            quant(x + m * K, act, m);
            if (act.d8)
                for (int64_t i = 0; i < 8 * act.d_stride; i++) {
                    act.d8[m * 8 * act.d_stride + i] = act.d[m * act.d_stride + i / 8];
                    act.s8[m * 8 * act.s_stride + i] = act.s[m * act.s_stride + i / 8] * 0.125f;
                }
        }
    };
    if (M < 16) quantize_rows(0, M);
    else pool.run([&](int t, int n_threads) { quantize_rows(M * t / n_threads, M * (t + 1) / n_threads); });
    return act;
}

// out[:, n0:n1) of one weight, all M rows.
void compute_columns(const CpuKernels& k, const QuantAct& act, const MatmulJob& job, int64_t M, int64_t n0,
                     int64_t n1) {
    const int64_t N = job.n, K = act.k;
    const size_t row_bytes = dtype_row_bytes(job.dtype, K);
    const char* wb = static_cast<const char*>(job.w);
    float* out = job.out;
    const int64_t n_tile = std::max<int64_t>(8, int64_t(kWeightTileBytes / std::max<size_t>(row_bytes, 1)));
    if (const TileDotFn tile = k.tile_dot[int(job.dtype)]) {
        for (int64_t mt = 0; mt < M; mt += kRowTile) {
            const int64_t mt_end = std::min(M, mt + kRowTile);
            for (int64_t nt = n0; nt < n1; nt += n_tile) {
                const int64_t nt_end = std::min(n1, nt + n_tile);
                for (int64_t m = mt; m < mt_end; m += kTileRows) {
                    const int r = int(std::min<int64_t>(kTileRows, mt_end - m));
                    // One weight row at a time at M = 1: a single sequential stream per thread keeps the hardware
                    // prefetchers ahead (4 interleaved rows measured 30% slower on F16 / Q8_0 decode); the
                    // arithmetic of each output is the same for every tile width.
                    const int64_t tc = M == 1 ? 1 : kTileCols;
                    for (int64_t n = nt; n < nt_end; n += tc) {
                        const int c = int(std::min<int64_t>(tc, nt_end - n));
                        tile(r, c, act, m, wb + size_t(n) * row_bytes, row_bytes, out + m * N + n, N);
                    }
                }
            }
        }
        return;
    }
    const RowsDotFn dot = k.rows_dot[int(job.dtype)];
    for (int64_t mt = 0; mt < M; mt += kRowTile) {
        const int64_t mt_end = std::min(M, mt + kRowTile);
        for (int64_t nt = n0; nt < n1; nt += n_tile) {
            const int64_t nt_end = std::min(n1, nt + n_tile);
            for (int64_t m = mt; m < mt_end; m += kMaxRows) {
                const int r = int(std::min<int64_t>(kMaxRows, mt_end - m));
                for (int64_t n = nt; n < nt_end; n++) dot(r, act, m, wb + size_t(n) * row_bytes, out + m * N + n, N);
            }
        }
    }
}

// out[:, n0:n1) of a job whose weight is in panels (n0 a multiple of 16, n1 - n0 <= 16 * kPanelCount): all M rows,
// kPanelRows at a time, each call streaming the chunk's panels once. Q8_0 panels are widened to f32 once per chunk
// when enough rows share them (the same weights, so the same results).
constexpr int64_t kUnpackMinRows = 4;

void compute_panel_columns(const CpuKernels& k, const float* x, int64_t K, const MatmulJob& job, int64_t M, int64_t n0,
                           int64_t n1) {
    const int n_cols = int(n1 - n0), n_panels = (n_cols + 15) / 16;
    const int64_t p0 = n0 / 16;
    auto rows = [&](auto&& kernel) {
        for (int64_t m = 0; m < M; m += kPanelRows)
            kernel(int(std::min<int64_t>(kPanelRows, M - m)), x + m * K, job.out + m * job.n + n0);
    };
    if (job.dtype == DType::F16 || job.dtype == DType::BF16) {
        const uint16_t* panels = static_cast<const uint16_t*>(job.panels) + p0 * K * 16;
        const PanelFn kernel = job.dtype == DType::F16 ? k.panel_f16 : k.panel_bf16;
        rows([&](int r, const float* xm, float* o) { kernel(r, n_panels, xm, K, panels, o, job.n, n_cols); });
        return;
    }
    const uint8_t* panels = static_cast<const uint8_t*>(job.panels) + p0 * (K / 32) * kQ8PanelBlockBytes;
    if (M < kUnpackMinRows) {
        rows([&](int r, const float* xm, float* o) { k.panel_q8_0(r, n_panels, xm, K, panels, o, job.n, n_cols); });
        return;
    }
    thread_local std::vector<float> wide;
    wide.resize(size_t(n_panels * K * 16));
    k.unpack_q8_0_panels(panels, n_panels, K, wide.data());
    rows([&](int r, const float* xm, float* o) { k.panel_f32(r, n_panels, xm, K, wide.data(), o, job.n, n_cols); });
}

}  // namespace

void pack_16bit_panels(const uint16_t* w, int64_t N, int64_t K, uint16_t* dst) {
    for (int64_t p = 0; p < (N + 15) / 16; p++) {
        uint16_t* panel = dst + p * K * 16;
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < 16; c++) {
                const int64_t n = p * 16 + c;
                panel[k * 16 + c] = n < N ? w[n * K + k] : uint16_t(0);
            }
    }
}

void pack_q8_0_panels(const BlockQ8_0* w, int64_t N, int64_t K, uint8_t* dst) {
    const int64_t nb = K / 32;
    for (int64_t p = 0; p < (N + 15) / 16; p++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t* blk = dst + (p * nb + b) * kQ8PanelBlockBytes;
            auto* d = reinterpret_cast<uint16_t*>(blk);
            auto* q = reinterpret_cast<int8_t*>(blk + 32);
            for (int64_t c = 0; c < 16; c++) {
                const int64_t n = p * 16 + c;
                const BlockQ8_0* src = n < N ? w + n * nb + b : nullptr;
                d[c] = src ? src->d : uint16_t(0);
                for (int i = 0; i < 32; i++) q[i * 16 + c] = src ? src->qs[i] : int8_t(0);
            }
        }
    }
}

int64_t panel_bytes(DType dtype, int64_t N, int64_t K) {
    const int64_t n_panels = (N + 15) / 16;
    if (dtype == DType::F16 || dtype == DType::BF16) return n_panels * K * 16 * 2;
    if (dtype == DType::Q8_0 && K % 32 == 0) return n_panels * (K / 32) * kQ8PanelBlockBytes;
    return 0;
}

void matmul_driver_multi(ThreadPool& pool, const CpuKernels& k, MatmulScratch* scratch, const float* x, int64_t M,
                         int64_t K, const MatmulJob* jobs, int n_jobs) {
    OSP_CHECK(n_jobs >= 1 && n_jobs <= kMaxMatmulJobs, "matmul: {} weights in one call", n_jobs);
    // One quantized copy of x per activation kind in use.
    QuantAct acts[3];
    bool have[3] = {};
    const QuantAct* job_act[kMaxMatmulJobs];
    for (int j = 0; j < n_jobs; j++) {
        const int kind = jobs[j].panels ? int(ActKind::F32) : int(act_kind(jobs[j].dtype));  // panels read x itself
        if (!have[kind]) acts[kind] = quantize_activations(pool, k, scratch[kind], ActKind(kind), x, M, K), have[kind] = true;
        job_act[j] = &acts[kind];
    }
    // Chunks of columns over all jobs, in job order (a panel job's chunk is kPanelCount panels).
    int64_t chunk[kMaxMatmulJobs];
    int64_t first_chunk[kMaxMatmulJobs + 1];
    first_chunk[0] = 0;
    for (int j = 0; j < n_jobs; j++) {
        OSP_CHECK(!jobs[j].panels || k.panel_f16, "matmul: panel weights without a panel kernel");
        // Panel jobs: kPanelCount panels per chunk; one at M = 1, so that a thread streams its panels in memory
        // order (one sequential stream, as the row kernels do at batch 1).
        chunk[j] = !jobs[j].panels ? kChunkCols : M == 1 ? 16 : 16 * kPanelCount;
        first_chunk[j + 1] = first_chunk[j] + (jobs[j].n + chunk[j] - 1) / chunk[j];
    }
    const int64_t n_chunks = first_chunk[n_jobs];
    auto run_chunk = [&](int64_t c) {
        int j = 0;
        while (c >= first_chunk[j + 1]) j++;
        const int64_t n0 = (c - first_chunk[j]) * chunk[j], n1 = std::min(jobs[j].n, n0 + chunk[j]);
        if (jobs[j].panels) compute_panel_columns(k, x, K, jobs[j], M, n0, n1);
        else compute_columns(k, *job_act[j], jobs[j], M, n0, n1);
    };
    int64_t total = 0;
    for (int j = 0; j < n_jobs; j++) total += M * jobs[j].n * K;
    if (total < (1 << 16) || pool.n_threads() == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; c++) run_chunk(c);
        return;
    }
    // Each thread streams one contiguous run of weight rows (the hardware prefetchers follow it; handing out
    // interleaved chunks measured 10-20% slower at batch 1) and steals from the back of another's when done early.
    pool.parallel_chunks(n_chunks, run_chunk);
}

}  // namespace osprey::backend::cpu
