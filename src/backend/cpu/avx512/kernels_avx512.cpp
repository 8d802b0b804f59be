// AVX-512 (F/BW/VL/DQ/VNNI) kernels: the shared 256-bit kernels with vpdpbusd/vpdpwssd and mask moves, plus
// 512-bit kernels for the 32-element block types that take two blocks per instruction.
// GCC 12 flags its own AVX-512 intrinsic headers (false positive on __Y).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define OSP_SIMD_NS osprey_simd_avx512
#define OSP_VNNI 1
#include "backend/cpu/simd_kernels_impl.h"

#include <algorithm>
#include <type_traits>

namespace osprey_simd_avx512 {

// Two consecutive blocks' unsigned codes as [block b (32 bytes), block b + 1 (32 bytes)] (scales: scales2).
template <DType T>
inline __m512i unpack32x2(const void* w, int64_t b) {
    using namespace osprey;
    if constexpr (T == DType::Q4_0 || T == DType::Q4_1) {
        using Block = std::conditional_t<T == DType::Q4_0, BlockQ4_0, BlockQ4_1>;
        const Block* x = static_cast<const Block*>(w) + b;
        const __m256i q = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(x[1].qs),
                                              reinterpret_cast<const __m128i*>(x[0].qs));
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        // [lo0 hi0 lo1 hi1] in 128-bit halves of each block
        const __m512i idx = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        return _mm512_permutex2var_epi64(_mm512_zextsi256_si512(lo), idx, _mm512_zextsi256_si512(hi));
    } else {
        float d, m;  // unused here: the tile kernels take both blocks' scales from scales2
        const __m256i a = unpack32<T>(w, b, d, m), c = unpack32<T>(w, b + 1, d, m);
        return _mm512_inserti64x4(_mm512_zextsi256_si512(a), c, 1);
    }
}

inline float hsum512(__m512 v) {
    return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

// Scales of blocks b, b + 1 as f32 [d0, m0, d1, m1] (m = the offset of w = d * code + m; 0 for Q8_0).
template <DType T>
inline __m128 scales2(const void* w, int64_t b) {
    using namespace osprey;
    if constexpr (T == DType::Q4_1 || T == DType::Q5_1 || T == DType::Q4_0 || T == DType::Q8_0) {
        using Block = std::conditional_t<T == DType::Q4_1, BlockQ4_1,
                      std::conditional_t<T == DType::Q5_1, BlockQ5_1,
                      std::conditional_t<T == DType::Q4_0, BlockQ4_0, BlockQ8_0>>>;
        const Block* x = static_cast<const Block*>(w) + b;
        uint32_t v0, v1;  // (d, m) or (d, first codes) as fp16 pairs
        std::memcpy(&v0, &x[0].d, 4);
        std::memcpy(&v1, &x[1].d, 4);
        __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128(int64_t(uint64_t(v0) | (uint64_t(v1) << 32))));
        if constexpr (T == DType::Q4_0) {  // [d0, d0, d1, d1] -> [d0, -8 d0, d1, -8 d1]
            f = _mm_shuffle_ps(f, f, _MM_SHUFFLE(2, 2, 0, 0));
            f = _mm_blend_ps(f, _mm_mul_ps(f, _mm_set1_ps(-8.0f)), 0b1010);
        } else if constexpr (T == DType::Q8_0) {
            f = _mm_blend_ps(f, _mm_setzero_ps(), 0b1010);
        }
        return f;
    } else {
        float d0, m0, d1, m1;
        unpack32<T>(w, b, d0, m0);
        unpack32<T>(w, b + 1, d1, m1);
        return _mm_setr_ps(d0, m0, d1, m1);
    }
}


// Horizontal sums of four accumulators at once: [sum A, sum B, sum C, sum D]. Every slot's lanes are added in
// the same order (quarters q0 + q2, q1 + q3, then those two, then lanes 0 + 2, 1 + 3, then those two), so a sum
// does not depend on which slot it occupies or on what the other slots hold.
inline __m128 hsum4x512(__m512 A, __m512 B, __m512 C, __m512 D) {
    const __m512 AB = _mm512_add_ps(_mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 CD = _mm512_add_ps(_mm512_shuffle_f32x4(C, D, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_f32x4(C, D, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 X = _mm512_add_ps(_mm512_shuffle_f32x4(AB, CD, _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_f32x4(AB, CD, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 Y = _mm512_add_ps(X, _mm512_permute_ps(X, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 Z = _mm512_add_ps(Y, _mm512_permute_ps(Y, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), Z));
}

// ---- 32-element block types: R activation rows x NW weight rows ----
// Each (r, j) has its own accumulator; per pair of blocks it adds cvt(p) * (dw * dx) and, for types with an offset,
// m_w * s_x / 8 in all 8 lanes of each block (s8), so the result never depends on R, NW or the row's position.
template <DType T>
constexpr int64_t kBlockBytes = T == DType::Q4_0 ? sizeof(osprey::BlockQ4_0) : T == DType::Q4_1 ? sizeof(osprey::BlockQ4_1)
                                : T == DType::Q5_0 ? sizeof(osprey::BlockQ5_0) : T == DType::Q5_1 ? sizeof(osprey::BlockQ5_1)
                                : sizeof(osprey::BlockQ8_0);
// Weight rows are streamed from memory once per matmul at batch 1: prefetch the rows this many ahead.
constexpr int kPrefetchRows = 12;

template <DType T, int R, int NW>
void tile_dot_32x2(const QuantAct& a, int64_t m0, const char* w, size_t rb, float* out, int64_t os) {
    constexpr bool kMin = T != DType::Q8_0;
    __m512 acc[R][NW];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NW; j++) acc[r][j] = _mm512_setzero_ps();
    const int64_t nb = a.k / 32, nb2 = nb & ~int64_t(1);
    const __m512i idx_d = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i idx_m = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    for (int64_t b = 0; b < nb2; b += 2) {
        __m512i wv[NW];
        __m512 dw[NW], mw[NW];
        __mmask64 neg[NW];
        for (int j = 0; j < NW; j++) {
            _mm_prefetch(w + (j + kPrefetchRows) * rb + b * kBlockBytes<T>, _MM_HINT_T0);
            wv[j] = unpack32x2<T>(w + j * rb, b);
            const __m512 sc = _mm512_castps128_ps512(scales2<T>(w + j * rb, b));
            dw[j] = _mm512_permutexvar_ps(idx_d, sc);
            if constexpr (kMin) mw[j] = _mm512_permutexvar_ps(idx_m, sc);
            if constexpr (T == DType::Q8_0) neg[j] = _mm512_movepi8_mask(wv[j]), wv[j] = _mm512_abs_epi8(wv[j]);
        }
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            const __m512i xh = _mm512_loadu_si512(a.qs + row * a.qs_stride + 32 * b);
            const __m512i xl = _mm512_loadu_si512(a.ql + row * a.qs_stride + 32 * b);
            const __m512 dx = _mm512_loadu_ps(a.d8 + row * 8 * a.d_stride + 8 * b);
            __m512 sx;
            if constexpr (kMin) sx = _mm512_loadu_ps(a.s8 + row * 8 * a.s_stride + 8 * b);
            for (int j = 0; j < NW; j++) {
                __m512i h = xh, l = xl;
                if constexpr (T == DType::Q8_0) {
                    h = _mm512_mask_sub_epi8(h, neg[j], _mm512_setzero_si512(), h);
                    l = _mm512_mask_sub_epi8(l, neg[j], _mm512_setzero_si512(), l);
                }
                const __m512i p = _mm512_dpbusd_epi32(
                    _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[j], h), 8), wv[j], l);
                acc[r][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[j], dx), acc[r][j]);
                if constexpr (kMin) acc[r][j] = _mm512_fmadd_ps(mw[j], sx, acc[r][j]);
            }
        }
    }
    float tail[R][NW] = {};
    if (nb2 < nb) {  // odd block count: the 256-bit single-block step, same for every (r, j)
        const int64_t b = nb2;
        for (int j = 0; j < NW; j++) {
            float dw1, mw1;
            const __m256i wq = unpack32<T>(w + j * rb, b, dw1, mw1);
            __m256i wu = wq;
            if constexpr (T == DType::Q8_0) wu = _mm256_sign_epi8(wq, wq);
            for (int r = 0; r < R; r++) {
                const int64_t row = m0 + r;
                __m256i xh = load256(a.qs + row * a.qs_stride + 32 * b);
                __m256i xl = load256(a.ql + row * a.qs_stride + 32 * b);
                if constexpr (T == DType::Q8_0) xh = _mm256_sign_epi8(xh, wq), xl = _mm256_sign_epi8(xl, wq);
                const __m256i p = dot_two_terms(wu, xh, xl);
                float t = hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw1 * a.d[row * a.d_stride + b])));
                if constexpr (kMin) t = std::fma(mw1, a.s[row * a.s_stride + b], t);
                tail[r][j] = t;
            }
        }
    }
    const __m512 z = _mm512_setzero_ps();
    for (int r = 0; r < R; r++) {
        alignas(16) float s[4];
        _mm_store_ps(s, hsum4x512(acc[r][0], NW > 1 ? acc[r][NW > 1 ? 1 : 0] : z, NW > 2 ? acc[r][NW > 2 ? 2 : 0] : z,
                                  NW > 3 ? acc[r][NW > 3 ? 3 : 0] : z));
        for (int j = 0; j < NW; j++) out[r * os + j] = s[j] + tail[r][j];
    }
}

// ---- float weights: R activation rows x NW weight rows, each output one 16-lane accumulator over k ----

template <DType T>
inline __m512 load16w(const void* w, int64_t k) {
    if constexpr (T == DType::F32) {
        return _mm512_loadu_ps(static_cast<const float*>(w) + k);
    } else {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + k));
        if constexpr (T == DType::F16) return _mm512_cvtph_ps(h);
        else return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
}

template <DType T>
inline __m512 load8w_masked(const void* w, int64_t k) {  // lanes 0..7 = w[k..k+8), 8..15 = 0
    if constexpr (T == DType::F32) {
        return _mm512_maskz_loadu_ps(0xFF, static_cast<const float*>(w) + k);
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k));
        if constexpr (T == DType::F16) return _mm512_zextps256_ps512(_mm256_cvtph_ps(h));
        else return _mm512_zextps256_ps512(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
}


template <DType T, int R, int NW>
void tile_dot_float(const QuantAct& a, int64_t m0, const void* w, size_t row_bytes, float* out, int64_t os) {
    const int64_t K = a.k;
    const char* wb = static_cast<const char*>(w);
    __m512 acc[R][NW];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < NW; j++) acc[r][j] = _mm512_setzero_ps();
    int64_t k = 0;
    // No software prefetch here: plain rows stream well on the hardware prefetchers alone (prefetching 2 to 16
    // rows ahead measured 10-15% slower F16 decode), unlike the block kernels above.
    for (; k + 16 <= K; k += 16) {
        __m512 wv[NW];
        for (int j = 0; j < NW; j++) wv[j] = load16w<T>(wb + j * row_bytes, k);
        for (int r = 0; r < R; r++) {
            const __m512 xv = _mm512_loadu_ps(a.xf + (m0 + r) * K + k);
            for (int j = 0; j < NW; j++) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
        }
    }
    if (k + 8 <= K) {  // lanes 8..15 get + 0 * 0
        __m512 wv[NW];
        for (int j = 0; j < NW; j++) wv[j] = load8w_masked<T>(wb + j * row_bytes, k);
        for (int r = 0; r < R; r++) {
            const __m512 xv = _mm512_maskz_loadu_ps(0xFF, a.xf + (m0 + r) * K + k);
            for (int j = 0; j < NW; j++) acc[r][j] = _mm512_mask3_fmadd_ps(xv, wv[j], acc[r][j], 0xFF);
        }
        k += 8;
    }
    for (int r = 0; r < R; r++) {
        const float* x = a.xf + (m0 + r) * K;
        for (int j = 0; j < NW; j++) {
            float s = hsum512(acc[r][j]);
            for (int64_t i = k; i < K; i++) s = std::fma(x[i], load1<T>(wb + j * row_bytes, i), s);
            out[r * os + j] = s;
        }
    }
}

// ---- tile dispatch: Kernel<T, R, NW>::run for n_rows <= kTileRows, n_w <= kTileCols ----

template <DType T, int R, int NW>
struct Tile32 {
    static void run(const QuantAct& a, int64_t m0, const void* w, size_t rb, float* o, int64_t os) {
        tile_dot_32x2<T, R, NW>(a, m0, static_cast<const char*>(w), rb, o, os);
    }
};
template <DType T, int R, int NW>
struct TileFloat {
    static void run(const QuantAct& a, int64_t m0, const void* w, size_t rb, float* o, int64_t os) {
        tile_dot_float<T, R, NW>(a, m0, w, rb, o, os);
    }
};

template <template <DType, int, int> class Kernel, DType T, int R>
void tile_cols(int n_w, const QuantAct& a, int64_t m0, const void* w, size_t rb, float* o, int64_t os) {
    switch (n_w) {
        case 1: Kernel<T, R, 1>::run(a, m0, w, rb, o, os); break;
        case 2: Kernel<T, R, 2>::run(a, m0, w, rb, o, os); break;
        case 3: Kernel<T, R, 3>::run(a, m0, w, rb, o, os); break;
        default: Kernel<T, R, 4>::run(a, m0, w, rb, o, os); break;
    }
}

template <template <DType, int, int> class Kernel, DType T>
void tile(int n_rows, int n_w, const QuantAct& a, int64_t m0, const void* w, size_t rb, float* o, int64_t os) {
    switch (n_rows) {
        case 1: tile_cols<Kernel, T, 1>(n_w, a, m0, w, rb, o, os); break;
        case 2: tile_cols<Kernel, T, 2>(n_w, a, m0, w, rb, o, os); break;
        case 3: tile_cols<Kernel, T, 3>(n_w, a, m0, w, rb, o, os); break;
        default: tile_cols<Kernel, T, 4>(n_w, a, m0, w, rb, o, os); break;
    }
}

// rows_dot through the tile kernel (one weight row; n_rows may exceed kTileRows).
template <template <DType, int, int> class Kernel, DType T>
void rows_dot_tiled(int n_rows, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    for (int r = 0; r < n_rows; r += osprey::backend::cpu::kTileRows) {
        const int nr = std::min(osprey::backend::cpu::kTileRows, n_rows - r);
        tile<Kernel, T>(nr, 1, a, m0 + r, w, 0, o + r * os, os);
    }
}

// ---- panel kernels: weights in panels of 16 weight rows (F16 / BF16: [K][16] per panel; Q8_0: per block, 16 scales and
// 32 x 16 codes; f32: [K][16], Q8_0 panels widened once) ----

// MR rows of x against NP panels: one accumulator vector per (row, panel), one fma per k in order k = 0 .. K - 1.
// Broadcasting x[r, k] against 16 columns needs no horizontal sum; 8 x 3 keeps 24 accumulators in registers.
// w[p] is panel p's 16 weights at k as f32 (exact for every layout, so all three kernels give the same bits).
template <int MR, int NP>
inline void panel_fma(const float* x, int64_t k, const __m512 (&w)[NP], __m512 (&acc)[MR][NP], int64_t K) {
    for (int r = 0; r < MR; r++) {
        const __m512 xb = _mm512_set1_ps(x[r * K + k]);
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_fmadd_ps(xb, w[p], acc[r][p]);
    }
}

template <int MR, int NP>
inline void panel_store(const __m512 (&acc)[MR][NP], float* out, int64_t os, int n_cols) {
    for (int p = 0; p < NP; p++) {
        const int c = std::min(16, n_cols - 16 * p);
        const __mmask16 mask = c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << c) - 1);
        for (int r = 0; r < MR; r++) _mm512_mask_storeu_ps(out + r * os + 16 * p, mask, acc[r][p]);
    }
}

// Panels of float weights (F16, BF16, or f32 from widened Q8_0 panels): 16 weights per k, read with load16w.
template <int MR, int NP, DType T>
void panel_float_t(const float* x, int64_t K, const void* panels, float* out, int64_t os, int n_cols) {
    constexpr size_t kElem = T == DType::F32 ? 4 : 2;
    __m512 acc[MR][NP];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        __m512 w[NP];
        for (int p = 0; p < NP; p++)
            w[p] = load16w<T>(static_cast<const char*>(panels) + size_t(p * K * 16) * kElem, k * 16);
        panel_fma<MR, NP>(x, k, w, acc, K);
    }
    panel_store(acc, out, os, n_cols);
}

// 16 Q8_0 weights of one k: codes widened to f32 times the block's scales (an exact product).
inline __m512 q8_panel_row(const int8_t* q, __m512 d) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)))),
                         d);
}

template <int MR, int NP>
void panel_q8_0_t(const float* x, int64_t K, const void* pv, float* out, int64_t os, int n_cols) {
    const auto* panels = static_cast<const uint8_t*>(pv);
    const int64_t nb = K / 32, pstride = nb * osprey::backend::cpu::kQ8PanelBlockBytes;
    __m512 acc[MR][NP];
    for (int r = 0; r < MR; r++)
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512 d[NP];
        const uint8_t* blk[NP];
        for (int p = 0; p < NP; p++) {
            blk[p] = panels + p * pstride + b * osprey::backend::cpu::kQ8PanelBlockBytes;
            d[p] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[p])));
        }
        for (int i = 0; i < 32; i++) {
            __m512 w[NP];
            for (int p = 0; p < NP; p++) w[p] = q8_panel_row(reinterpret_cast<const int8_t*>(blk[p] + 32) + i * 16, d[p]);
            panel_fma<MR, NP>(x, b * 32 + i, w, acc, K);
        }
    }
    panel_store(acc, out, os, n_cols);
}

void unpack_q8_0_panels(const uint8_t* panels, int n_panels, int64_t K, float* dst) {
    const int64_t nb = K / 32;
    for (int p = 0; p < n_panels; p++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t* blk = panels + (p * nb + b) * osprey::backend::cpu::kQ8PanelBlockBytes;
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk)));
            for (int i = 0; i < 32; i++)
                _mm512_storeu_ps(dst + ((p * K) + b * 32 + i) * 16,
                                 q8_panel_row(reinterpret_cast<const int8_t*>(blk + 32) + i * 16, d));
        }
}

// ---- exponential and gated activations, 16 lanes: the 8-lane kernels of simd_kernels_impl.h on each half, so
// every element is exactly theirs; the loops below run masked 16-lane tails instead of scalar copies.
template <__m256 (*F)(__m256)>
inline __m512 halves(__m512 x) {
    const __m256 lo = F(_mm512_castps512_ps256(x)), hi = F(_mm512_extractf32x8_ps(x, 1));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}
template <__m256 (*F)(__m256, __m256)>
inline __m512 halves(__m512 a, __m512 b) {
    const __m256 lo = F(_mm512_castps512_ps256(a), _mm512_castps512_ps256(b));
    const __m256 hi = F(_mm512_extractf32x8_ps(a, 1), _mm512_extractf32x8_ps(b, 1));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

// exp_sub_sum on 16 lanes (the tail masked): each lane sums its elements in order, then the 16 lanes are reduced.
float exp_sub_sum512(float* x, int64_t n, float mx) {
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        const __m512 e = halves<exp8>(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        _mm512_mask_storeu_ps(x + i, m, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
    }
    return _mm512_reduce_add_ps(acc);
}

template <__m256 (*F)(__m256, __m256)>
void gated_mul512(float* out, const float* g, const float* u, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, halves<F>(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
    }
}

// Dispatch on (rows, panels) for a panel kernel template K<MR, NP>.
template <template <int, int> class Kern>
void panel_dispatch(int n_rows, int n_panels, const float* x, int64_t K, const void* panels, float* out, int64_t os,
                    int n_cols) {
    static_assert(osprey::backend::cpu::kPanelRows == 8 && osprey::backend::cpu::kPanelCount == 3);
    auto by_panels = [&]<int MR>() {
        switch (n_panels) {
            case 1: Kern<MR, 1>::run(x, K, panels, out, os, n_cols); break;
            case 2: Kern<MR, 2>::run(x, K, panels, out, os, n_cols); break;
            default: Kern<MR, 3>::run(x, K, panels, out, os, n_cols); break;
        }
    };
    switch (n_rows) {
        case 1: by_panels.template operator()<1>(); break;
        case 2: by_panels.template operator()<2>(); break;
        case 3: by_panels.template operator()<3>(); break;
        case 4: by_panels.template operator()<4>(); break;
        case 5: by_panels.template operator()<5>(); break;
        case 6: by_panels.template operator()<6>(); break;
        case 7: by_panels.template operator()<7>(); break;
        default: by_panels.template operator()<8>(); break;
    }
}

template <int MR, int NP> struct PanelF16 { static void run(const float* x, int64_t K, const void* p, float* o, int64_t os, int n) { panel_float_t<MR, NP, DType::F16>(x, K, p, o, os, n); } };
template <int MR, int NP> struct PanelBF16 { static void run(const float* x, int64_t K, const void* p, float* o, int64_t os, int n) { panel_float_t<MR, NP, DType::BF16>(x, K, p, o, os, n); } };
template <int MR, int NP> struct PanelF32 { static void run(const float* x, int64_t K, const void* p, float* o, int64_t os, int n) { panel_float_t<MR, NP, DType::F32>(x, K, p, o, os, n); } };
template <int MR, int NP> struct PanelQ8 { static void run(const float* x, int64_t K, const void* p, float* o, int64_t os, int n) { panel_q8_0_t<MR, NP>(x, K, p, o, os, n); } };

// ---- attention: 512-bit kernels for head sizes that are multiples of 16 (64, 128, 256 ...) ----

// [sum a0, ..., sum a7]: lanes i + 8, then i + 4, i + 2, i + 1 are added, the same order for every slot.
inline __m256 hsum8x512(const __m512* a) {
    __m512 t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // t[i] = [a_2i (lanes 0..7 + 8..15), a_2i+1 (same)]
    const __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 u1 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(3, 1, 3, 1)));
    // u0 quarters = a0, a1, a2, a3 (4 lanes each); u1 = a4 .. a7
    const __m512 v = _mm512_add_ps(_mm512_unpacklo_ps(u0, u1), _mm512_unpackhi_ps(u0, u1));
    // per quarter q: [x0 + x2, y0 + y2, x1 + x3, y1 + y3] with x = a_q, y = a_q+4
    const __m512 w = _mm512_add_ps(v, _mm512_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_castps512_ps256(
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), w));
}

template <bool F16>
inline __m512 load16_kv(const void* base, int64_t off) {
    if constexpr (F16) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                           static_cast<const uint16_t*>(base) + off)));
    else return _mm512_loadu_ps(static_cast<const float*>(base) + off);
}

// Eight context rows per step, each dotted with q in 16-lane chunks; a partial last step repeats the last row
// (its extra lanes are dropped), so every score is computed the same way whatever n is.
template <bool F16, int NC>
void attn_scores_t(const float* q, const void* base, const int64_t* offs, int n, float scale, float* scores) {
    __m512 qv[NC];
    for (int c = 0; c < NC; c++) qv[c] = _mm512_loadu_ps(q + 16 * c);
    const __m256 vs = _mm256_set1_ps(scale);
    for (int j0 = 0; j0 < n; j0 += 8) {
        __m512 acc[8];
        for (int r = 0; r < 8; r++) {
            const int64_t off = offs[std::min(j0 + r, n - 1)];
            acc[r] = _mm512_mul_ps(qv[0], load16_kv<F16>(base, off));
            for (int c = 1; c < NC; c++) acc[r] = _mm512_fmadd_ps(qv[c], load16_kv<F16>(base, off + 16 * c), acc[r]);
        }
        const __m256 sv = _mm256_mul_ps(hsum8x512(acc), vs);
        _mm256_mask_storeu_ps(scores + j0, __mmask8((1u << std::min(8, n - j0)) - 1), sv);
    }
}

template <bool F16, int NC>
void attn_values_t512(float* out, const float* p, const void* base, const int64_t* offs, int n) {
    __m512 acc[NC];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        const __m512 pj = _mm512_set1_ps(p[j]);
        for (int c = 0; c < NC; c++) acc[c] = _mm512_fmadd_ps(pj, load16_kv<F16>(base, offs[j] + 16 * c), acc[c]);
    }
    for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

void attn_scores512(const float* q, const void* base, bool f16, const int64_t* offs, int n, int hd, float scale,
                    float* scores);
void attn_values512(float* out, const float* p, const void* base, bool f16, const int64_t* offs, int n, int hd);

// attn_scores_t for GS heads at once: R context rows per step, each row's K chunks loaded once and dotted with every
// head's q (read from memory); per (head, row) the same mul / fma chain over the chunks and the same hsum8x512 tree
// as attn_scores_t, so each score is bit-identical to it.
template <bool F16, int NC, int GS, int R>
void attn_scores_group_t(const float* q, int hd, const void* base, const int64_t* offs, int n, float scale,
                         float* scores, int64_t stride) {
    static_assert(GS * R <= 16 && (GS * R) % 4 == 0);
    const __m256 vs = _mm256_set1_ps(scale);
    for (int j0 = 0; j0 < n; j0 += R) {
        __m512 acc[16];
        for (int r = 0; r < R; r++) {
            const int64_t off = offs[std::min(j0 + r, n - 1)];
            __m512 kv[NC];
            for (int c = 0; c < NC; c++) kv[c] = load16_kv<F16>(base, off + 16 * c);
            for (int g = 0; g < GS; g++) {
                const float* qg = q + g * hd;
                __m512 a = _mm512_mul_ps(_mm512_loadu_ps(qg), kv[0]);
                for (int c = 1; c < NC; c++) a = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16 * c), kv[c], a);
                acc[g * R + r] = a;
            }
        }
        const int m = std::min(R, n - j0);
        for (int v0 = 0; v0 < GS * R; v0 += 8) {  // vectors (g, r) in order, 8 per reduction (the tail padded)
            __m512 batch[8];
            for (int i = 0; i < 8; i++) batch[i] = acc[std::min(v0 + i, GS * R - 1)];
            float sums[8];
            _mm256_storeu_ps(sums, _mm256_mul_ps(hsum8x512(batch), vs));
            for (int i = 0; i < 8 && v0 + i < GS * R; i++) {
                const int g = (v0 + i) / R, r = (v0 + i) % R;
                if (r < m) scores[g * stride + j0 + r] = sums[i];
            }
        }
    }
}

// attn_values_t512 for GS heads at once: each V row's chunks loaded once, one fma per (head, chunk) in order of j.
template <bool F16, int NC, int GS>
void attn_values_group_t(float* out, int hd, const float* p, int64_t stride, const void* base, const int64_t* offs,
                         int n) {
    __m512 acc[GS][NC];
    for (int g = 0; g < GS; g++)
        for (int c = 0; c < NC; c++) acc[g][c] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        __m512 vv[NC];
        for (int c = 0; c < NC; c++) vv[c] = load16_kv<F16>(base, offs[j] + 16 * c);
        for (int g = 0; g < GS; g++) {
            const __m512 pj = _mm512_set1_ps(p[g * stride + j]);
            for (int c = 0; c < NC; c++) acc[g][c] = _mm512_fmadd_ps(pj, vv[c], acc[g][c]);
        }
    }
    for (int g = 0; g < GS; g++)
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(out + g * hd + 16 * c, acc[g][c]);
}

// Heads in sub-groups the registers hold: scores 4 (or 3) heads x 4 rows (hd <= 128) or 2 x 2 (256); values 4 (or
// 3) heads at hd 64, 2 at 128, 1 at 256. Other head sizes: one head at a time through the plain kernels.
template <bool F16>
void attn_scores_group_f(const float* q, int g, const void* base, const int64_t* offs, int n, int hd, float scale,
                         float* scores, int64_t stride) {
    for (int h = 0; h < g;) {
        const int left = g - h;
        const float* qh = q + h * hd;
        float* sh = scores + h * stride;
        if (hd == 64 && left >= 4) attn_scores_group_t<F16, 4, 4, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 4;
        else if (hd == 64 && left == 3) attn_scores_group_t<F16, 4, 3, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 3;
        else if (hd == 128 && left == 3) attn_scores_group_t<F16, 8, 3, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 3;
        else if (hd == 64 && left >= 2) attn_scores_group_t<F16, 4, 2, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 2;
        else if (hd == 128 && left >= 4) attn_scores_group_t<F16, 8, 4, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 4;
        else if (hd == 128 && left >= 2) attn_scores_group_t<F16, 8, 2, 4>(qh, hd, base, offs, n, scale, sh, stride), h += 2;
        else if (hd == 256 && left >= 2) attn_scores_group_t<F16, 16, 2, 2>(qh, hd, base, offs, n, scale, sh, stride), h += 2;
        else attn_scores512(qh, base, F16, offs, n, hd, scale, sh), h += 1;
    }
}

template <bool F16>
void attn_values_group_f(float* out, int g, const float* p, int64_t stride, const void* base, const int64_t* offs,
                         int n, int hd) {
    for (int h = 0; h < g;) {
        const int left = g - h;
        float* oh = out + h * hd;
        const float* ph = p + h * stride;
        if (hd == 64 && left >= 4) attn_values_group_t<F16, 4, 4>(oh, hd, ph, stride, base, offs, n), h += 4;
        else if (hd == 64 && left == 3) attn_values_group_t<F16, 4, 3>(oh, hd, ph, stride, base, offs, n), h += 3;
        else if (hd == 64 && left >= 2) attn_values_group_t<F16, 4, 2>(oh, hd, ph, stride, base, offs, n), h += 2;
        else if (hd == 128 && left >= 2) attn_values_group_t<F16, 8, 2>(oh, hd, ph, stride, base, offs, n), h += 2;
        else attn_values512(oh, ph, base, F16, offs, n, hd), h += 1;
    }
}

void attn_scores_group512(const float* q, int g, const void* base, bool f16, const int64_t* offs, int n, int hd,
                          float scale, float* scores, int64_t stride) {
    if (f16) attn_scores_group_f<true>(q, g, base, offs, n, hd, scale, scores, stride);
    else attn_scores_group_f<false>(q, g, base, offs, n, hd, scale, scores, stride);
}

void attn_values_group512(float* out, int g, const float* p, int64_t stride, const void* base, bool f16,
                          const int64_t* offs, int n, int hd) {
    if (f16) attn_values_group_f<true>(out, g, p, stride, base, offs, n, hd);
    else attn_values_group_f<false>(out, g, p, stride, base, offs, n, hd);
}

void attn_scores512(const float* q, const void* base, bool f16, const int64_t* offs, int n, int hd, float scale,
                    float* scores) {
    switch (hd) {
        case 64: return f16 ? attn_scores_t<true, 4>(q, base, offs, n, scale, scores)
                            : attn_scores_t<false, 4>(q, base, offs, n, scale, scores);
        case 128: return f16 ? attn_scores_t<true, 8>(q, base, offs, n, scale, scores)
                             : attn_scores_t<false, 8>(q, base, offs, n, scale, scores);
        case 256: return f16 ? attn_scores_t<true, 16>(q, base, offs, n, scale, scores)
                             : attn_scores_t<false, 16>(q, base, offs, n, scale, scores);
        default: return attn_scores(q, base, f16, offs, n, hd, scale, scores);
    }
}

void attn_values512(float* out, const float* p, const void* base, bool f16, const int64_t* offs, int n, int hd) {
    switch (hd) {
        case 64: return f16 ? attn_values_t512<true, 4>(out, p, base, offs, n)
                            : attn_values_t512<false, 4>(out, p, base, offs, n);
        case 128: return f16 ? attn_values_t512<true, 8>(out, p, base, offs, n)
                             : attn_values_t512<false, 8>(out, p, base, offs, n);
        case 256: return f16 ? attn_values_t512<true, 16>(out, p, base, offs, n)
                             : attn_values_t512<false, 16>(out, p, base, offs, n);
        default: return attn_values(out, p, base, f16, offs, n, hd);
    }
}

}  // namespace osprey_simd_avx512

namespace osprey::backend::cpu {

void fill_avx512_kernels(CpuKernels& k) {
    namespace s = osprey_simd_avx512;
    s::fill(k);
    k.rows_dot[int(DType::Q4_0)] = s::rows_dot_tiled<s::Tile32, DType::Q4_0>;
    k.rows_dot[int(DType::Q4_1)] = s::rows_dot_tiled<s::Tile32, DType::Q4_1>;
    k.rows_dot[int(DType::Q5_0)] = s::rows_dot_tiled<s::Tile32, DType::Q5_0>;
    k.rows_dot[int(DType::Q5_1)] = s::rows_dot_tiled<s::Tile32, DType::Q5_1>;
    k.rows_dot[int(DType::Q8_0)] = s::rows_dot_tiled<s::Tile32, DType::Q8_0>;
    k.tile_dot[int(DType::Q4_0)] = s::tile<s::Tile32, DType::Q4_0>;
    k.tile_dot[int(DType::Q4_1)] = s::tile<s::Tile32, DType::Q4_1>;
    k.tile_dot[int(DType::Q5_0)] = s::tile<s::Tile32, DType::Q5_0>;
    k.tile_dot[int(DType::Q5_1)] = s::tile<s::Tile32, DType::Q5_1>;
    k.tile_dot[int(DType::Q8_0)] = s::tile<s::Tile32, DType::Q8_0>;
    k.rows_dot[int(DType::F32)] = s::rows_dot_tiled<s::TileFloat, DType::F32>;
    k.rows_dot[int(DType::F16)] = s::rows_dot_tiled<s::TileFloat, DType::F16>;
    k.rows_dot[int(DType::BF16)] = s::rows_dot_tiled<s::TileFloat, DType::BF16>;
    k.tile_dot[int(DType::F32)] = s::tile<s::TileFloat, DType::F32>;
    k.tile_dot[int(DType::F16)] = s::tile<s::TileFloat, DType::F16>;
    k.tile_dot[int(DType::BF16)] = s::tile<s::TileFloat, DType::BF16>;
    k.panel_f16 = s::panel_dispatch<s::PanelF16>;
    k.panel_bf16 = s::panel_dispatch<s::PanelBF16>;
    k.panel_q8_0 = s::panel_dispatch<s::PanelQ8>;
    k.panel_f32 = s::panel_dispatch<s::PanelF32>;
    k.unpack_q8_0_panels = s::unpack_q8_0_panels;
    k.exp_sub_sum = s::exp_sub_sum512;
    k.silu_mul = s::gated_mul512<s::silu_mul8>;
    k.gelu_tanh_mul = s::gated_mul512<s::gelu_tanh_mul8>;
    k.attn_scores = s::attn_scores512;
    k.attn_values = s::attn_values512;
    k.attn_scores_group = s::attn_scores_group512;
    k.attn_values_group = s::attn_values_group512;
    k.isa = Isa::Avx512;
}

}  // namespace osprey::backend::cpu
