// 256-bit SIMD kernels shared by the AVX2 and AVX-512 builds. Included by avx2/kernels_avx2.cpp and
// avx512/kernels_avx512.cpp inside their own namespace; OSP_VNNI selects vpdpbusd/vpdpwssd (AVX-512 VNNI on
// ymm) over the AVX2 maddubs/madd sequences. Every row kernel is a template on the row count R whose per-row
// operations do not depend on R (batch invariance).
#ifndef OSP_SIMD_NS
#error "define OSP_SIMD_NS before including simd_kernels_impl.h"
#endif

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"
#include "core/half.h"

namespace OSP_SIMD_NS {  // distinct per ISA (ODR)

using osprey::DType;
using osprey::backend::cpu::QuantAct;
using osprey::backend::cpu::kMaxRows;

inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) {
#ifdef OSP_VNNI
    return _mm256_dpbusd_epi32(acc, u8, s8);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1)));
#endif
}

inline __m256i dpwssd(__m256i acc, __m256i a, __m256i b) {
#ifdef OSP_VNNI
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// 32 bits -> 32 bytes of 0xFF / 0x00 (byte j set iff bit j set).
inline __m256i bytes_from_bits(const uint8_t* p) {
    uint32_t bits;
    std::memcpy(&bits, p, 4);
#ifdef OSP_VNNI
    return _mm256_movm_epi8(__mmask32(bits));
#else
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
#endif
}

// 16 bytes of nibbles -> 32 bytes [low nibbles (elements 0..15), high nibbles (16..31)].
inline __m256i unpack_nibbles16(const uint8_t* qs) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---- activation quantization (bit-identical to the scalar quantizers; see QuantAct) ----

struct QuantConsts {
    __m256 vid, vD, vid_lo;
    QuantConsts(float D, float id) : vid(_mm256_set1_ps(id)), vD(_mm256_set1_ps(D)), vid_lo(_mm256_set1_ps(id * 256.0f)) {}
};

// 8 floats -> hi and lo int32 lanes.
inline void quant8(const float* x, const QuantConsts& c, __m256i& h, __m256i& l) {
    const __m256 xv = _mm256_loadu_ps(x);
    h = _mm256_cvtps_epi32(_mm256_mul_ps(xv, c.vid));
    const __m256 r = _mm256_fnmadd_ps(c.vD, _mm256_cvtepi32_ps(h), xv);
    l = _mm256_cvtps_epi32(_mm256_mul_ps(r, c.vid_lo));
    l = _mm256_max_epi32(_mm256_min_epi32(l, _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
}

inline void store_packed32(int8_t* out, __m256i q0, __m256i q1, __m256i q2, __m256i q3) {
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), p);
}

// 32 floats -> 32 hi and 32 lo int8; returns the lane sums of hi (sh) and lo (sl) per 16-element half.
inline void quant32x2(const float* x, const QuantConsts& c, int8_t* hi, int8_t* lo, __m256i sh[2], __m256i sl[2]) {
    __m256i h[4], l[4];
    for (int i = 0; i < 4; i++) quant8(x + 8 * i, c, h[i], l[i]);
    store_packed32(hi, h[0], h[1], h[2], h[3]);
    store_packed32(lo, l[0], l[1], l[2], l[3]);
    sh[0] = _mm256_add_epi32(h[0], h[1]), sh[1] = _mm256_add_epi32(h[2], h[3]);
    sl[0] = _mm256_add_epi32(l[0], l[1]), sl[1] = _mm256_add_epi32(l[2], l[3]);
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline void quantize_q8_32(const float* x, const QuantAct& a, int64_t row) {
    int8_t* q = a.qs + row * a.qs_stride;
    int8_t* ql = a.ql + row * a.qs_stride;
    float* d = a.d + row * a.d_stride;
    float* s = a.s + row * a.s_stride;
    for (int64_t b = 0; b < a.k / 32; b++) {
        const float* xb = x + 32 * b;
        __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(_mm256_loadu_ps(xb)), abs_ps(_mm256_loadu_ps(xb + 8))),
                                 _mm256_max_ps(abs_ps(_mm256_loadu_ps(xb + 16)), abs_ps(_mm256_loadu_ps(xb + 24))));
        const float amax = hmax(m);
        const float D = amax / 127.0f, id = D != 0 ? 1.0f / D : 0.0f;
        __m256i sh[2], sl[2];
        quant32x2(xb, QuantConsts(D, id), q + 32 * b, ql + 32 * b, sh, sl);
        const __m256i sum = _mm256_add_epi32(_mm256_slli_epi32(_mm256_add_epi32(sh[0], sh[1]), 8),
                                             _mm256_add_epi32(sl[0], sl[1]));
        d[b] = D * (1.0f / 256.0f);
        s[b] = d[b] * float(hsum_i32(sum));
    }
}

inline void quantize_q8_256(const float* x, const QuantAct& a, int64_t row) {
    int8_t* q = a.qs + row * a.qs_stride;
    int8_t* ql = a.ql + row * a.qs_stride;
    float* d = a.d + row * a.d_stride;
    int16_t* bs = a.bsums + row * a.bsums_stride;
    int16_t* bl = a.bsums_lo + row * a.bsums_stride;
    for (int64_t b = 0; b < a.k / 256; b++) {
        const float* xb = x + 256 * b;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 32; i++) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb + 8 * i)));
        const float amax = hmax(m);
        const float D = amax / 127.0f, id = D != 0 ? 1.0f / D : 0.0f;
        const QuantConsts c(D, id);
        for (int j = 0; j < 8; j++) {
            __m256i sh[2], sl[2];
            quant32x2(xb + 32 * j, c, q + 256 * b + 32 * j, ql + 256 * b + 32 * j, sh, sl);
            for (int h = 0; h < 2; h++) {
                bs[16 * b + 2 * j + h] = int16_t(hsum_i32(sh[h]));
                bl[16 * b + 2 * j + h] = int16_t(hsum_i32(sl[h]));
            }
        }
        d[b] = D * (1.0f / 256.0f);
    }
}

// ---- 32-element block types ----

// Unsigned codes (u8) of block b, its scale d and the offset m such that w = d * code + m.
template <DType T>
inline __m256i unpack32(const void* w, int64_t b, float& d, float& m) {
    using namespace osprey;
    if constexpr (T == DType::Q4_0) {
        const BlockQ4_0& x = static_cast<const BlockQ4_0*>(w)[b];
        d = h2f(x.d), m = -8.0f * d;
        return unpack_nibbles16(x.qs);
    } else if constexpr (T == DType::Q4_1) {
        const BlockQ4_1& x = static_cast<const BlockQ4_1*>(w)[b];
        d = h2f(x.d), m = h2f(x.m);
        return unpack_nibbles16(x.qs);
    } else if constexpr (T == DType::Q5_0) {
        const BlockQ5_0& x = static_cast<const BlockQ5_0*>(w)[b];
        d = h2f(x.d), m = -16.0f * d;
        return _mm256_or_si256(unpack_nibbles16(x.qs), _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10)));
    } else if constexpr (T == DType::Q5_1) {
        const BlockQ5_1& x = static_cast<const BlockQ5_1*>(w)[b];
        d = h2f(x.d), m = h2f(x.m);
        return _mm256_or_si256(unpack_nibbles16(x.qs), _mm256_and_si256(bytes_from_bits(x.qh), _mm256_set1_epi8(0x10)));
    } else {
        static_assert(T == DType::Q8_0);
        const BlockQ8_0& x = static_cast<const BlockQ8_0*>(w)[b];
        d = h2f(x.d), m = 0;
        return load256(x.qs);
    }
}

// Both activation terms against one unpacked weight block: p = 256 * dot(w, hi) + dot(w, lo) per int32 lane.
inline __m256i dot_two_terms(__m256i wu, __m256i xh, __m256i xl) {
    const __m256i p = _mm256_slli_epi32(dpbusd(_mm256_setzero_si256(), wu, xh), 8);
    return dpbusd(p, wu, xl);
}

template <DType T, int R>
void rows_dot_32(const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    __m256 acc[R];
    float macc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps(), macc[r] = 0.0f;
    const int64_t nb = a.k / 32;
    for (int64_t b = 0; b < nb; b++) {
        float dw, mw;
        const __m256i wv = unpack32<T>(w, b, dw, mw);
        __m256i wu = wv;
        if constexpr (T == DType::Q8_0) wu = _mm256_sign_epi8(wv, wv);  // |w|
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            __m256i xh = load256(a.qs + row * a.qs_stride + 32 * b);
            __m256i xl = load256(a.ql + row * a.qs_stride + 32 * b);
            if constexpr (T == DType::Q8_0) xh = _mm256_sign_epi8(xh, wv), xl = _mm256_sign_epi8(xl, wv);  // x * sign(w)
            const __m256i p = dot_two_terms(wu, xh, xl);
            const float dx = a.d[row * a.d_stride + b];
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx), acc[r]);
            if constexpr (T != DType::Q8_0) macc[r] = std::fma(mw, a.s[row * a.s_stride + b], macc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r * os] = hsum(acc[r]) + macc[r];
}

// ---- k-quants ----

inline void scales_mins_k4(const uint8_t* q, uint8_t* sc, uint8_t* mn) {
    for (int j = 0; j < 4; j++) sc[j] = q[j] & 63, mn[j] = q[j + 4] & 63;
    for (int j = 4; j < 8; j++) {
        sc[j] = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        mn[j] = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

template <int R>
void rows_dot_q4_k(const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    using osprey::BlockQ4_K;
    __m256 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < a.k / 256; b++) {
        const BlockQ4_K& x = static_cast<const BlockQ4_K*>(w)[b];
        const float d = h2f(x.d), dmin = h2f(x.dmin);
        alignas(16) uint8_t sc[8], mn[16];
        scales_mins_k4(x.scales, sc, mn);
        // mins per group of 16 elements (each sub-block of 32 is two groups)
        alignas(16) uint8_t mn16[16];
        for (int g = 0; g < 16; g++) mn16[g] = mn[g / 2];
        const __m256i vmins = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(mn16)));
        __m256i lo[4], hi[4], vs[8];
        for (int j = 0; j < 4; j++) {
            const __m256i q = load256(x.qs + 32 * j);
            lo[j] = _mm256_and_si256(q, m4);
            hi[j] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        for (int s = 0; s < 8; s++) vs[s] = _mm256_set1_epi16(sc[s]);
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            const int8_t* xq = a.qs + row * a.qs_stride + 256 * b;
            const int8_t* xl = a.ql + row * a.qs_stride + 256 * b;
            const __m256i summ = _mm256_add_epi32(
                _mm256_slli_epi32(_mm256_madd_epi16(load256(a.bsums + row * a.bsums_stride + 16 * b), vmins), 8),
                _mm256_madd_epi16(load256(a.bsums_lo + row * a.bsums_stride + 16 * b), vmins));
            __m256i sumi = _mm256_setzero_si256(), sumi_lo = _mm256_setzero_si256();
            for (int j = 0; j < 4; j++) {
                sumi = dpwssd(sumi, _mm256_maddubs_epi16(lo[j], load256(xq + 64 * j)), vs[2 * j]);
                sumi = dpwssd(sumi, _mm256_maddubs_epi16(hi[j], load256(xq + 64 * j + 32)), vs[2 * j + 1]);
                sumi_lo = dpwssd(sumi_lo, _mm256_maddubs_epi16(lo[j], load256(xl + 64 * j)), vs[2 * j]);
                sumi_lo = dpwssd(sumi_lo, _mm256_maddubs_epi16(hi[j], load256(xl + 64 * j + 32)), vs[2 * j + 1]);
            }
            const float dx = a.d[row * a.d_stride + b];
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d * dx * 256.0f), acc[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi_lo), _mm256_set1_ps(d * dx), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ), _mm256_set1_ps(dmin * dx), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r * os] = hsum(acc[r]);
}

template <int R>
void rows_dot_q6_k(const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    using osprey::BlockQ6_K;
    __m256 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < a.k / 256; b++) {
        const BlockQ6_K& x = static_cast<const BlockQ6_K*>(w)[b];
        const float d = h2f(x.d);
        const __m256i vsc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
        __m256i q[8], vs[8];  // q[4n + i]: elements 128n + 32i .. +31 (codes 0..63)
        for (int n = 0; n < 2; n++) {
            const __m256i ql0 = load256(x.ql + 64 * n), ql1 = load256(x.ql + 64 * n + 32);
            const __m256i qh = load256(x.qh + 32 * n);
            q[4 * n + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            q[4 * n + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            q[4 * n + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            q[4 * n + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
            for (int i = 0; i < 4; i++) {
                const int g = 8 * n + 2 * i;  // scale index of the first 16 elements
                vs[4 * n + i] = _mm256_set_m128i(_mm_set1_epi16(x.scales[g + 1]), _mm_set1_epi16(x.scales[g]));
            }
        }
        for (int r = 0; r < R; r++) {
            const int64_t row = m0 + r;
            const int8_t* xq = a.qs + row * a.qs_stride + 256 * b;
            const int8_t* xl = a.ql + row * a.qs_stride + 256 * b;
            const __m256i summ = _mm256_madd_epi16(load256(a.bsums + row * a.bsums_stride + 16 * b), vsc16);
            const __m256i summ_lo = _mm256_madd_epi16(load256(a.bsums_lo + row * a.bsums_stride + 16 * b), vsc16);
            __m256i sumi = _mm256_setzero_si256(), sumi_lo = _mm256_setzero_si256();
            for (int i = 0; i < 8; i++) {
                sumi = dpwssd(sumi, _mm256_maddubs_epi16(q[i], load256(xq + 32 * i)), vs[i]);
                sumi_lo = dpwssd(sumi_lo, _mm256_maddubs_epi16(q[i], load256(xl + 32 * i)), vs[i]);
            }
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(summ, 5));  // codes are q + 32
            sumi_lo = _mm256_sub_epi32(sumi_lo, _mm256_slli_epi32(summ_lo, 5));
            const float dx = a.d[row * a.d_stride + b];
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_set1_ps(d * dx * 256.0f), acc[r]);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi_lo), _mm256_set1_ps(d * dx), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r * os] = hsum(acc[r]);
}

// ---- float weights ----

template <DType T>
inline __m256 load8(const void* w, int64_t k) {
    if constexpr (T == DType::F32) {
        return _mm256_loadu_ps(static_cast<const float*>(w) + k);
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k));
        if constexpr (T == DType::F16) return _mm256_cvtph_ps(h);
        else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
}

template <DType T>
inline float load1(const void* w, int64_t k) {
    if constexpr (T == DType::F32) return static_cast<const float*>(w)[k];
    else if constexpr (T == DType::F16) return h2f(static_cast<const uint16_t*>(w)[k]);
    else return osprey::bf16_to_fp32(static_cast<const uint16_t*>(w)[k]);
}

template <DType T, int R>
void rows_dot_float(const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    const int64_t K = a.k;
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m256 w0 = load8<T>(w, k), w1 = load8<T>(w, k + 8);
        for (int r = 0; r < R; r++) {
            const float* x = a.xf + (m0 + r) * K + k;
            acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), w1, acc1[r]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 w0 = load8<T>(w, k);
        for (int r = 0; r < R; r++) acc0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(a.xf + (m0 + r) * K + k), w0, acc0[r]);
    }
    for (int r = 0; r < R; r++) {
        float s = hsum(_mm256_add_ps(acc0[r], acc1[r]));
        const float* x = a.xf + (m0 + r) * K;
        for (int64_t j = k; j < K; j++) s = std::fma(x[j], load1<T>(w, j), s);
        out[r * os] = s;
    }
}

// ---- dispatch on the row count ----

template <template <int> class F>
void dispatch_rows(int n_rows, const QuantAct& a, int64_t m0, const void* w, float* out, int64_t os) {
    switch (n_rows) {
        case 1: F<1>::run(a, m0, w, out, os); break;
        case 2: F<2>::run(a, m0, w, out, os); break;
        case 3: F<3>::run(a, m0, w, out, os); break;
        case 4: F<4>::run(a, m0, w, out, os); break;
        case 5: F<5>::run(a, m0, w, out, os); break;
        case 6: F<6>::run(a, m0, w, out, os); break;
        case 7: F<7>::run(a, m0, w, out, os); break;
        default: F<8>::run(a, m0, w, out, os); break;
    }
}

template <DType T>
struct Dot32 {
    template <int R>
    struct F {
        static void run(const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
            rows_dot_32<T, R>(a, m0, w, o, os);
        }
    };
};
template <DType T>
struct DotFloat {
    template <int R>
    struct F {
        static void run(const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
            rows_dot_float<T, R>(a, m0, w, o, os);
        }
    };
};
template <int R>
struct DotQ4K {
    static void run(const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) { rows_dot_q4_k<R>(a, m0, w, o, os); }
};
template <int R>
struct DotQ6K {
    static void run(const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) { rows_dot_q6_k<R>(a, m0, w, o, os); }
};

template <DType T>
void dot32(int n, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    dispatch_rows<Dot32<T>::template F>(n, a, m0, w, o, os);
}
template <DType T>
void dot_float(int n, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    dispatch_rows<DotFloat<T>::template F>(n, a, m0, w, o, os);
}
inline void dot_q4_k(int n, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    dispatch_rows<DotQ4K>(n, a, m0, w, o, os);
}
inline void dot_q6_k(int n, const QuantAct& a, int64_t m0, const void* w, float* o, int64_t os) {
    dispatch_rows<DotQ6K>(n, a, m0, w, o, os);
}

// ---- attention primitives ----

inline float dot_f32(const float* a, const float* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s = std::fma(a[i], b[i], s);
    return s;
}

inline float dot_f16(const float* a, const uint16_t* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8<DType::F16>(b, i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8<DType::F16>(b, i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8<DType::F16>(b, i), s0);
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s = std::fma(a[i], h2f(b[i]), s);
    return s;
}

inline void axpy_f32(float* y, float a, const float* x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = std::fma(a, x[i], y[i]);
}

inline void axpy_f16(float* y, float a, const uint16_t* x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load8<DType::F16>(x, i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = std::fma(a, h2f(x[i]), y[i]);
}

inline void attn_scores(const float* q, const void* base, bool f16, const int64_t* offs, int n, int hd, float scale,
                        float* scores) {
    if (f16) {
        const uint16_t* b = static_cast<const uint16_t*>(base);
        for (int j = 0; j < n; j++) scores[j] = dot_f16(q, b + offs[j], hd) * scale;
    } else {
        const float* b = static_cast<const float*>(base);
        for (int j = 0; j < n; j++) scores[j] = dot_f32(q, b + offs[j], hd) * scale;
    }
}

// out[c .. c + 8 * C) = sum_j p[j] * row_j[c ..], accumulators in registers across all rows.
template <bool F16, int C>
inline void attn_values_chunk(float* out, const float* p, const void* base, const int64_t* offs, int n, int c) {
    __m256 acc[C];
    for (int i = 0; i < C; i++) acc[i] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        const __m256 pj = _mm256_set1_ps(p[j]);
        if constexpr (F16) {
            const uint16_t* v = static_cast<const uint16_t*>(base) + offs[j] + c;
            for (int i = 0; i < C; i++) acc[i] = _mm256_fmadd_ps(pj, load8<DType::F16>(v, 8 * i), acc[i]);
        } else {
            const float* v = static_cast<const float*>(base) + offs[j] + c;
            for (int i = 0; i < C; i++) acc[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8 * i), acc[i]);
        }
    }
    for (int i = 0; i < C; i++) _mm256_storeu_ps(out + c + 8 * i, acc[i]);
}

template <bool F16>
inline void attn_values_t(float* out, const float* p, const void* base, const int64_t* offs, int n, int hd) {
    int c = 0;
    for (; c + 64 <= hd; c += 64) attn_values_chunk<F16, 8>(out, p, base, offs, n, c);
    for (; c + 8 <= hd; c += 8) attn_values_chunk<F16, 1>(out, p, base, offs, n, c);
    for (; c < hd; c++) {
        float a = 0.0f;
        for (int j = 0; j < n; j++) {
            const float v = F16 ? h2f(static_cast<const uint16_t*>(base)[offs[j] + c])
                                : static_cast<const float*>(base)[offs[j] + c];
            a = std::fma(p[j], v, a);
        }
        out[c] = a;
    }
}

inline void attn_values(float* out, const float* p, const void* base, bool f16, const int64_t* offs, int n, int hd) {
    if (f16) attn_values_t<true>(out, p, base, offs, n, hd);
    else attn_values_t<false>(out, p, base, offs, n, hd);
}

// ---- exponential and gated activations ----

// exp(x) for 8 lanes: x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact reduction), exp(r) by the
// Cephes degree-7 polynomial, times 2^n built in the exponent bits. Relative error ~1 ulp on [-87, 88]; inputs are
// clamped there (exp(-87.3) ~ 1e-38 stands for 0, exp(88.7) for overflow).
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // n in [-126, 128]: 2^n as two factors so n = 128 does not overflow the exponent field.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

inline void f32_to_f16(uint16_t* dst, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = osprey::fp32_to_fp16(x[i]);
}

inline float exp_sub_sum(float* x, int64_t n, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {  // the tail through a masked 8-lane step (unused lanes add 0)
        alignas(32) float t[8] = {};
        const int r = int(n - i);
        for (int j = 0; j < r; j++) t[j] = x[i + j] - mx;
        const __m256 e = exp8(_mm256_load_ps(t));
        _mm256_store_ps(t, e);
        for (int j = 0; j < r; j++) x[i + j] = t[j];
        for (int j = r; j < 8; j++) t[j] = 0.0f;
        acc = _mm256_add_ps(acc, _mm256_load_ps(t));
    }
    return hsum(acc);
}

// out = silu(g) * u = g / (1 + exp(-g)) * u
inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

// out = 0.5 g (1 + tanh(y)) * u with y = c (g + 0.044715 g^3); 1 + tanh(y) = 2 / (1 + exp(-2y)), which keeps full
// relative precision on both sides (2 - 2 / (exp(2y) + 1) would cancel for negative g).
inline __m256 gelu_tanh_mul8(__m256 g, __m256 u) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f);
    const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    const __m256 y = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), g3, g));
    const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), y));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

template <__m256 (*F)(__m256, __m256)>
inline void gated_mul(float* out, const float* g, const float* u, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, F(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) {
        alignas(32) float tg[8] = {}, tu[8] = {};
        const int r = int(n - i);
        for (int j = 0; j < r; j++) tg[j] = g[i + j], tu[j] = u[i + j];
        _mm256_store_ps(tg, F(_mm256_load_ps(tg), _mm256_load_ps(tu)));
        for (int j = 0; j < r; j++) out[i + j] = tg[j];
    }
}

inline void fill(osprey::backend::cpu::CpuKernels& k) {
    k.quantize_q8_32 = quantize_q8_32;
    k.quantize_q8_256 = quantize_q8_256;
    k.rows_dot[int(DType::F32)] = dot_float<DType::F32>;
    k.rows_dot[int(DType::F16)] = dot_float<DType::F16>;
    k.rows_dot[int(DType::BF16)] = dot_float<DType::BF16>;
    k.rows_dot[int(DType::Q4_0)] = dot32<DType::Q4_0>;
    k.rows_dot[int(DType::Q4_1)] = dot32<DType::Q4_1>;
    k.rows_dot[int(DType::Q5_0)] = dot32<DType::Q5_0>;
    k.rows_dot[int(DType::Q5_1)] = dot32<DType::Q5_1>;
    k.rows_dot[int(DType::Q8_0)] = dot32<DType::Q8_0>;
    k.rows_dot[int(DType::Q4_K)] = dot_q4_k;
    k.rows_dot[int(DType::Q6_K)] = dot_q6_k;
    k.dot_f32 = dot_f32;
    k.dot_f16 = dot_f16;
    k.axpy_f32 = axpy_f32;
    k.axpy_f16 = axpy_f16;
    k.attn_scores = attn_scores;
    k.attn_values = attn_values;
    k.f32_to_f16 = f32_to_f16;
    k.exp_sub_sum = exp_sub_sum;
    k.silu_mul = gated_mul<silu_mul8>;
    k.gelu_tanh_mul = gated_mul<gelu_tanh_mul8>;
}

}  // namespace OSP_SIMD_NS
