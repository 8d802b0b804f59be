// AVX-512 (F/BW/VL/DQ/VNNI) kernels: the shared 256-bit kernels with vpdpbusd/vpdpwssd and mask moves, plus
// 512-bit kernels for the 32-element block types that take two blocks per instruction.
// GCC 12 flags its own AVX-512 intrinsic headers (false positive on __Y).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define OSP_SIMD_NS osprey_simd_avx512
#define OSP_VNNI 1
#include "backend/cpu/simd_kernels_impl.h"

namespace osprey_simd_avx512 {

// Two consecutive blocks' unsigned codes as [block b (32 bytes), block b + 1 (32 bytes)].
template <DType T>
inline __m512i unpack32x2(const void* w, int64_t b, float& d0, float& m0, float& d1, float& m1) {
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
        d0 = h2f(x[0].d), d1 = h2f(x[1].d);
        if constexpr (T == DType::Q4_0) m0 = -8.0f * d0, m1 = -8.0f * d1;
        else m0 = h2f(x[0].m), m1 = h2f(x[1].m);
        return _mm512_permutex2var_epi64(_mm512_zextsi256_si512(lo), idx, _mm512_zextsi256_si512(hi));
    } else {
        const __m256i a = unpack32<T>(w, b, d0, m0), c = unpack32<T>(w, b + 1, d1, m1);
        return _mm512_inserti64x4(_mm512_zextsi256_si512(a), c, 1);
    }
}

inline float hsum512(__m512 v) {
    return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

template <DType T, int R>
void rows_dot_32x2(const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    constexpr bool kMin = T != DType::Q8_0;
    __m512 acc[R];
    __m128 macc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps(), macc[r] = _mm_setzero_ps();
    const int64_t nb = a.k / 32;
    const __m512i pair_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        float d0, mn0, d1, mn1;
        __m512i wv = unpack32x2<T>(w, b, d0, mn0, d1, mn1);
        __mmask64 neg = 0;
        if constexpr (T == DType::Q8_0) neg = _mm512_movepi8_mask(wv), wv = _mm512_abs_epi8(wv);
        const __m512 dw = _mm512_insertf32x8(_mm512_zextps256_ps512(_mm256_set1_ps(d0)), _mm256_set1_ps(d1), 1);
        const __m128 mw = _mm_setr_ps(mn0, mn1, 0.0f, 0.0f);
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            __m512i xh = _mm512_loadu_si512(a.qs + row * a.qs_stride + 32 * b);
            __m512i xl = _mm512_loadu_si512(a.ql + row * a.qs_stride + 32 * b);
            if constexpr (T == DType::Q8_0) {
                xh = _mm512_mask_sub_epi8(xh, neg, _mm512_setzero_si512(), xh);
                xl = _mm512_mask_sub_epi8(xl, neg, _mm512_setzero_si512(), xl);
            }
            const __m512i p = _mm512_dpbusd_epi32(
                _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xh), 8), wv, xl);
            const __m128 dx2 = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(a.d + row * a.d_stride + b)));
            const __m512 dx = _mm512_permutexvar_ps(pair_idx, _mm512_zextps128_ps512(dx2));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[r]);
            if constexpr (kMin) {
                const __m128 s2 =
                    _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(a.s + row * a.s_stride + b)));
                macc[r] = _mm_fmadd_ps(mw, s2, macc[r]);
            }
        }
    }
    float tail[R] = {};
    if (b < nb) {  // odd block count: the 256-bit single-block step, same for every row
        float dw, mw;
        const __m256i wv = unpack32<T>(w, b, dw, mw);
        __m256i wu = wv;
        if constexpr (T == DType::Q8_0) wu = _mm256_sign_epi8(wv, wv);
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            __m256i xh = load256(a.qs + row * a.qs_stride + 32 * b);
            __m256i xl = load256(a.ql + row * a.qs_stride + 32 * b);
            if constexpr (T == DType::Q8_0) xh = _mm256_sign_epi8(xh, wv), xl = _mm256_sign_epi8(xl, wv);
            const __m256i p = dot_two_terms(wu, xh, xl);
            tail[r] = hsum(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * a.d[row * a.d_stride + b])));
            if constexpr (kMin) tail[r] = std::fma(mw, a.s[row * a.s_stride + b], tail[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        const __m128 m = macc[r];
        out[r * os] = hsum512(acc[r]) + (_mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m))) + tail[r];
    }
}

template <DType T>
struct Dot32x2 {
    template <int R>
    struct F {
        static void run(const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
            rows_dot_32x2<T, R>(a, m0, w, o, os);
        }
    };
};

template <DType T>
void dot32x2(int n, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    dispatch_rows<Dot32x2<T>::template F>(n, a, m0, w, o, os);
}

}  // namespace osprey_simd_avx512

namespace osprey::backend::cpu {

void fill_avx512_kernels(CpuKernels& k) {
    namespace s = osprey_simd_avx512;
    s::fill(k);
    k.rows_dot[int(DType::Q4_0)] = s::dot32x2<DType::Q4_0>;
    k.rows_dot[int(DType::Q4_1)] = s::dot32x2<DType::Q4_1>;
    k.rows_dot[int(DType::Q5_0)] = s::dot32x2<DType::Q5_0>;
    k.rows_dot[int(DType::Q5_1)] = s::dot32x2<DType::Q5_1>;
    k.rows_dot[int(DType::Q8_0)] = s::dot32x2<DType::Q8_0>;
    k.isa = Isa::Avx512;
}

}  // namespace osprey::backend::cpu
