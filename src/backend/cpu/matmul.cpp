// The matmul driver: quantize the activation rows once, then split the output columns over the threads and
// tile rows x columns so a tile of weight rows stays in L1/L2 while row groups of x stream past it.
// Every out[m, n] is computed by the same row kernel with the same reduction order along K, whatever M is.
//
// Activations are quantized in two int8 terms (QuantAct): x ~= d (256 hi + lo), a 16-bit quantization that keeps
// the integer kernels; each kernel unpacks a weight block once and takes both terms' dot products. One int8 term
// alone gives a mean KL near 2e-3 against the float32 reference on SmolLM2, two give ~1e-7.
#include <algorithm>

#include "backend/cpu/cpu_kernels.h"
#include "core/thread_pool.h"

namespace osprey::backend::cpu {

namespace {
constexpr int64_t kRowTile = 64;              // rows of x per tile (prefill)
constexpr size_t kWeightTileBytes = 24 << 10;  // bytes of weight rows per tile
}  // namespace

void matmul_driver(ThreadPool& pool, const CpuKernels& k, MatmulScratch& sc, float* out, const float* x,
                   DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K) {
    const ActKind kind = act_kind(w_dtype);
    QuantAct act;
    act.k = K;
    if (kind == ActKind::F32) {
        act.xf = x;
    } else {
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
            act.d8 = sc.d8.data();
        }
        act.s = act.s_stride ? sc.s.data() : nullptr;
        act.bsums = act.bsums_stride ? sc.bsums.data() : nullptr;
        act.bsums_lo = act.bsums_stride ? sc.bsums.data() + M * act.bsums_stride : nullptr;
        const QuantizeActFn quant = kind == ActKind::Q8_32 ? k.quantize_q8_32 : k.quantize_q8_256;
        auto quantize_rows = [&](int64_t b, int64_t e) {
            for (int64_t m = b; m < e; m++) {
                quant(x + m * K, act, m);
                if (act.d8)
                    for (int64_t i = 0; i < 8 * act.d_stride; i++)
                        act.d8[m * 8 * act.d_stride + i] = act.d[m * act.d_stride + i / 8];
            }
        };
        if (M < 16) {
            quantize_rows(0, M);
        } else {
            pool.run([&](int t, int n_threads) { quantize_rows(M * t / n_threads, M * (t + 1) / n_threads); });
        }
    }

    const RowsDotFn dot = k.rows_dot[int(w_dtype)];
    const size_t row_bytes = dtype_row_bytes(w_dtype, K);
    const char* wb = static_cast<const char*>(w);
    const int64_t n_tile = std::max<int64_t>(8, int64_t(kWeightTileBytes / std::max<size_t>(row_bytes, 1)));

    const TileDotFn tile = k.tile_dot[int(w_dtype)];
    auto work_tiles = [&](int64_t n0, int64_t n1) {
        for (int64_t mt = 0; mt < M; mt += kRowTile) {
            const int64_t mt_end = std::min(M, mt + kRowTile);
            for (int64_t nt = n0; nt < n1; nt += n_tile) {
                const int64_t nt_end = std::min(n1, nt + n_tile);
                for (int64_t m = mt; m < mt_end; m += kTileRows) {
                    const int r = int(std::min<int64_t>(kTileRows, mt_end - m));
                    for (int64_t n = nt; n < nt_end; n += kTileCols) {
                        const int c = int(std::min<int64_t>(kTileCols, nt_end - n));
                        tile(r, c, act, m, wb + size_t(n) * row_bytes, row_bytes, out + m * N + n, N);
                    }
                }
            }
        }
    };
    auto work = [&](int64_t n0, int64_t n1) {
        if (tile) {
            work_tiles(n0, n1);
            return;
        }
        if (M == 1) {
            for (int64_t n = n0; n < n1; n++) dot(1, act, 0, wb + size_t(n) * row_bytes, out + n, N);
            return;
        }
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
    };
    // Split columns in multiples of 16 so threads write separate cache lines.
    const int64_t grain = N >= 16 * pool.n_threads() ? 16 : 1;
    if (int64_t(M) * N * K < (1 << 16)) {
        work(0, N);
    } else {
        pool.parallel_for(N, grain, work);
    }
}

}  // namespace osprey::backend::cpu
