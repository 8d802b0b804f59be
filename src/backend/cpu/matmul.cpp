// The matmul driver: quantize the activation rows once, then split the output columns over the threads and
// tile rows x columns so a tile of weight rows stays in L1/L2 while row groups of x stream past it.
// Every out[m, n] is computed by the same row kernel with the same reduction order along K, whatever M is.
//
// Activations are quantized in two int8 terms: x ~= hi + lo, where hi is x quantized per block and lo is the
// residual x - hi quantized per block again. dot(w, x) = dot(w, hi) + dot(w, lo) keeps the integer kernels but cuts
// the activation rounding error by ~250x (to about that of int16), which is what keeps the logits within the KL
// bound of the float32 reference: one int8 term alone gives a mean KL near 2e-3 on SmolLM2, two give ~1e-7.
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
    QuantAct hi, lo;
    hi.k = lo.k = K;
    if (kind == ActKind::F32) {
        hi.xf = x;
    } else {
        const int64_t qs_stride = (K + 63) / 64 * 64;
        const int64_t d_stride = kind == ActKind::Q8_32 ? K / 32 : K / kQK_K;
        const int64_t s_stride = kind == ActKind::Q8_32 ? K / 32 : 0;
        const int64_t bsums_stride = kind == ActKind::Q8_32 ? 0 : K / 16;
        sc.qs.resize(size_t(2 * M * qs_stride));
        sc.d.resize(size_t(2 * M * d_stride));
        sc.s.resize(size_t(2 * M * s_stride));
        sc.bsums.resize(size_t(2 * M * bsums_stride));
        sc.residual.resize(size_t(pool.n_threads()) * size_t(K));
        int term = 0;
        for (QuantAct* a : {&hi, &lo}) {
            a->qs_stride = qs_stride;
            a->d_stride = d_stride;
            a->s_stride = s_stride;
            a->bsums_stride = bsums_stride;
            a->qs = sc.qs.data() + term * M * qs_stride;
            a->d = sc.d.data() + term * M * d_stride;
            a->s = s_stride ? sc.s.data() + term * M * s_stride : nullptr;
            a->bsums = bsums_stride ? sc.bsums.data() + term * M * bsums_stride : nullptr;
            term++;
        }
        const QuantizeActFn quant = kind == ActKind::Q8_32 ? k.quantize_q8_32 : k.quantize_q8_256;
        const int64_t block = kind == ActKind::Q8_32 ? 32 : kQK_K;
        auto quantize_rows = [&](int64_t b, int64_t e, float* r) {
            for (int64_t m = b; m < e; m++) {
                const float* xr = x + m * K;
                quant(xr, hi, m);
                const int8_t* q = hi.qs + m * qs_stride;
                const float* d = hi.d + m * d_stride;
                for (int64_t i = 0; i < K; i++) r[i] = xr[i] - d[i / block] * float(q[i]);
                quant(r, lo, m);
            }
        };
        if (M < 16) {
            quantize_rows(0, M, sc.residual.data());
        } else {
            pool.run([&](int t, int n_threads) {
                const int64_t b = M * t / n_threads, e = M * (t + 1) / n_threads;
                quantize_rows(b, e, sc.residual.data() + size_t(t) * size_t(K));
            });
        }
    }
    const bool two_terms = kind != ActKind::F32;

    const RowsDotFn dot = k.rows_dot[int(w_dtype)];
    const size_t row_bytes = dtype_row_bytes(w_dtype, K);
    const char* wb = static_cast<const char*>(w);
    const int64_t n_tile = std::max<int64_t>(8, int64_t(kWeightTileBytes / std::max<size_t>(row_bytes, 1)));

    auto work = [&](int64_t n0, int64_t n1) {
        float lo_out[kMaxRows];
        if (M == 1) {
            for (int64_t n = n0; n < n1; n++) {
                const char* wr = wb + size_t(n) * row_bytes;
                dot(1, hi, 0, wr, out + n, N);
                if (two_terms) {
                    dot(1, lo, 0, wr, lo_out, 1);
                    out[n] += lo_out[0];
                }
            }
            return;
        }
        for (int64_t mt = 0; mt < M; mt += kRowTile) {
            const int64_t mt_end = std::min(M, mt + kRowTile);
            for (int64_t nt = n0; nt < n1; nt += n_tile) {
                const int64_t nt_end = std::min(n1, nt + n_tile);
                for (int64_t m = mt; m < mt_end; m += kMaxRows) {
                    const int r = int(std::min<int64_t>(kMaxRows, mt_end - m));
                    for (int64_t n = nt; n < nt_end; n++) {
                        const char* wr = wb + size_t(n) * row_bytes;
                        float* o = out + m * N + n;
                        dot(r, hi, m, wr, o, N);
                        if (two_terms) {
                            dot(r, lo, m, wr, lo_out, 1);
                            for (int i = 0; i < r; i++) o[i * N] += lo_out[i];
                        }
                    }
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
