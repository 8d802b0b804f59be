// Scalar kernels (the portable path, always available) and the run-time ISA choice.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/half.h"

namespace osprey::backend::cpu {

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Avx512: return "avx512";
        case Isa::Avx2: return "avx2";
        default: return "scalar";
    }
}

ActKind act_kind(DType w) {
    switch (w) {
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0:
            return ActKind::Q8_32;
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
            return ActKind::Q8_256;
        default:
            return ActKind::F32;
    }
}

namespace {

// ---- activation quantization (two int8 terms, see QuantAct) ----
inline int quant_lo(float x, float D, int hi, float id_lo) {
    const float r = std::fma(-D, float(hi), x);
    return std::clamp(int(std::nearbyint(r * id_lo)), -127, 127);
}

void quantize_q8_32_scalar(const float* x, const QuantAct& a, int64_t row) {
    int8_t* q = a.qs + row * a.qs_stride;
    int8_t* ql = a.ql + row * a.qs_stride;
    float* d = a.d + row * a.d_stride;
    float* s = a.s + row * a.s_stride;
    for (int64_t b = 0; b < a.k / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = std::fmax(amax, std::fabs(x[32 * b + j]));
        const float D = amax / 127.0f, id = D != 0 ? 1.0f / D : 0.0f, id_lo = id * 256.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            const float xv = x[32 * b + j];
            const int h = int(std::nearbyint(xv * id));
            const int l = quant_lo(xv, D, h, id_lo);
            q[32 * b + j] = int8_t(h);
            ql[32 * b + j] = int8_t(l);
            sum += 256 * h + l;
        }
        d[b] = D * (1.0f / 256.0f);
        s[b] = d[b] * float(sum);
    }
}

void quantize_q8_256_scalar(const float* x, const QuantAct& a, int64_t row) {
    int8_t* q = a.qs + row * a.qs_stride;
    int8_t* ql = a.ql + row * a.qs_stride;
    float* d = a.d + row * a.d_stride;
    int16_t* bs = a.bsums + row * a.bsums_stride;
    int16_t* bl = a.bsums_lo + row * a.bsums_stride;
    for (int64_t b = 0; b < a.k / kQK_K; b++) {
        float amax = 0;
        for (int j = 0; j < kQK_K; j++) amax = std::fmax(amax, std::fabs(x[kQK_K * b + j]));
        const float D = amax / 127.0f, id = D != 0 ? 1.0f / D : 0.0f, id_lo = id * 256.0f;
        for (int g = 0; g < 16; g++) {
            int sum = 0, sum_lo = 0;
            for (int j = 0; j < 16; j++) {
                const int i = kQK_K * int(b) + 16 * g + j;
                const int h = int(std::nearbyint(x[i] * id));
                const int l = quant_lo(x[i], D, h, id_lo);
                q[i] = int8_t(h);
                ql[i] = int8_t(l);
                sum += h;
                sum_lo += l;
            }
            bs[16 * b + g] = int16_t(sum);
            bl[16 * b + g] = int16_t(sum_lo);
        }
        d[b] = D * (1.0f / 256.0f);
    }
}

// ---- 32-element block families: w = d * q + m (m = 0 for the symmetric types) ----
struct Unpacked32 {
    int8_t q[32];
    float d, m;
};

template <DType T>
void unpack32(const void* w_row, int64_t b, Unpacked32& u) {
    if constexpr (T == DType::Q4_0) {
        const BlockQ4_0& x = static_cast<const BlockQ4_0*>(w_row)[b];
        for (int j = 0; j < 16; j++) u.q[j] = int8_t((x.qs[j] & 0xF) - 8), u.q[j + 16] = int8_t((x.qs[j] >> 4) - 8);
        u.d = fp16_to_fp32(x.d), u.m = 0;
    } else if constexpr (T == DType::Q4_1) {
        const BlockQ4_1& x = static_cast<const BlockQ4_1*>(w_row)[b];
        for (int j = 0; j < 16; j++) u.q[j] = int8_t(x.qs[j] & 0xF), u.q[j + 16] = int8_t(x.qs[j] >> 4);
        u.d = fp16_to_fp32(x.d), u.m = fp16_to_fp32(x.m);
    } else if constexpr (T == DType::Q5_0 || T == DType::Q5_1) {
        using Block = std::conditional_t<T == DType::Q5_0, BlockQ5_0, BlockQ5_1>;
        const Block& x = static_cast<const Block*>(w_row)[b];
        uint32_t qh;
        std::memcpy(&qh, x.qh, 4);
        const int off = T == DType::Q5_0 ? 16 : 0;
        for (int j = 0; j < 16; j++) {
            u.q[j] = int8_t(((x.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - off);
            u.q[j + 16] = int8_t(((x.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - off);
        }
        u.d = fp16_to_fp32(x.d);
        if constexpr (T == DType::Q5_1) u.m = fp16_to_fp32(x.m);
        else u.m = 0;
    } else {
        static_assert(T == DType::Q8_0);
        const BlockQ8_0& x = static_cast<const BlockQ8_0*>(w_row)[b];
        std::memcpy(u.q, x.qs, 32);
        u.d = fp16_to_fp32(x.d), u.m = 0;
    }
}

template <DType T>
void rows_dot_32(int n_rows, const QuantAct& a, int64_t m0, const void* w_row, float* out, int64_t out_stride) {
    float acc[kMaxRows] = {};
    Unpacked32 u;
    for (int64_t b = 0; b < a.k / 32; b++) {
        unpack32<T>(w_row, b, u);
        for (int r = 0; r < n_rows; r++) {
            const int8_t* xq = a.qs + (m0 + r) * a.qs_stride + 32 * b;
            const int8_t* xl = a.ql + (m0 + r) * a.qs_stride + 32 * b;
            int sumi = 0;
            for (int j = 0; j < 32; j++) sumi += int(u.q[j]) * (256 * int(xq[j]) + int(xl[j]));
            const float dx = a.d[(m0 + r) * a.d_stride + b];
            acc[r] += u.d * dx * float(sumi);
            if (u.m != 0) acc[r] += u.m * a.s[(m0 + r) * a.s_stride + b];
        }
    }
    for (int r = 0; r < n_rows; r++) out[r * out_stride] = acc[r];
}

// ---- k-quants: w = d * scale[g] * q - dmin * min[g] per group g of 16 ----
struct UnpackedK {
    int8_t q[kQK_K];
    int scale[16], min[16];
    float d, dmin;
};

inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63, m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

template <DType T>
void unpack_k(const void* w_row, int64_t b, UnpackedK& u) {
    if constexpr (T == DType::Q2_K) {
        const BlockQ2_K& x = static_cast<const BlockQ2_K*>(w_row)[b];
        for (int g = 0; g < 16; g++) u.scale[g] = x.scales[g] & 0xF, u.min[g] = x.scales[g] >> 4;
        int i = 0;
        for (int n = 0; n < 2; n++)
            for (int shift = 0; shift < 8; shift += 2)
                for (int l = 0; l < 32; l++) u.q[i++] = int8_t((x.qs[32 * n + l] >> shift) & 3);
        u.d = fp16_to_fp32(x.d), u.dmin = fp16_to_fp32(x.dmin);
    } else if constexpr (T == DType::Q3_K) {
        const BlockQ3_K& x = static_cast<const BlockQ3_K*>(w_row)[b];
        for (int g = 0; g < 16; g++) {
            const int lo = (g < 8) ? (x.scales[g] & 0xF) : (x.scales[g - 8] >> 4);
            const int hi = (x.scales[8 + (g % 4)] >> (2 * (g / 4))) & 3;
            u.scale[g] = (lo | (hi << 4)) - 32, u.min[g] = 0;
        }
        int i = 0;
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++) {
                const int shift = 2 * j;
                const uint8_t m = uint8_t(1 << (4 * n + j));
                for (int l = 0; l < 32; l++)
                    u.q[i++] = int8_t(((x.qs[32 * n + l] >> shift) & 3) - ((x.hmask[l] & m) ? 0 : 4));
            }
        u.d = fp16_to_fp32(x.d), u.dmin = 0;
    } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
        using Block = std::conditional_t<T == DType::Q4_K, BlockQ4_K, BlockQ5_K>;
        const Block& x = static_cast<const Block*>(w_row)[b];
        for (int s = 0; s < 8; s++) {
            int sc, m;
            scale_min_k4(s, x.scales, sc, m);
            u.scale[2 * s] = u.scale[2 * s + 1] = sc;
            u.min[2 * s] = u.min[2 * s + 1] = m;
        }
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                int lo = x.qs[32 * j + l] & 0xF, hi = x.qs[32 * j + l] >> 4;
                if constexpr (T == DType::Q5_K) {
                    lo |= ((x.qh[l] >> (2 * j)) & 1) << 4;
                    hi |= ((x.qh[l] >> (2 * j + 1)) & 1) << 4;
                }
                u.q[64 * j + l] = int8_t(lo), u.q[64 * j + 32 + l] = int8_t(hi);
            }
        u.d = fp16_to_fp32(x.d), u.dmin = fp16_to_fp32(x.dmin);
    } else {
        static_assert(T == DType::Q6_K);
        const BlockQ6_K& x = static_cast<const BlockQ6_K*>(w_row)[b];
        for (int g = 0; g < 16; g++) u.scale[g] = x.scales[g], u.min[g] = 0;
        for (int n = 0; n < 2; n++) {
            const uint8_t* ql = x.ql + 64 * n;
            const uint8_t* qh = x.qh + 32 * n;
            int8_t* q = u.q + 128 * n;
            for (int l = 0; l < 32; l++) {
                q[l] = int8_t(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[l + 32] = int8_t(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[l + 64] = int8_t(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[l + 96] = int8_t(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        u.d = fp16_to_fp32(x.d), u.dmin = 0;
    }
}

template <DType T>
void rows_dot_k(int n_rows, const QuantAct& a, int64_t m0, const void* w_row, float* out, int64_t out_stride) {
    float acc[kMaxRows] = {};
    UnpackedK u;
    for (int64_t b = 0; b < a.k / kQK_K; b++) {
        unpack_k<T>(w_row, b, u);
        for (int r = 0; r < n_rows; r++) {
            const int8_t* xq = a.qs + (m0 + r) * a.qs_stride + kQK_K * b;
            const int8_t* xl = a.ql + (m0 + r) * a.qs_stride + kQK_K * b;
            const int16_t* bs = a.bsums + (m0 + r) * a.bsums_stride + 16 * b;
            const int16_t* bl = a.bsums_lo + (m0 + r) * a.bsums_stride + 16 * b;
            // int64: 256 * hi + lo products summed over 256 elements with 8-bit scales exceed int32.
            int64_t sumi = 0, summ = 0;
            for (int g = 0; g < 16; g++) {
                int64_t s = 0;
                for (int j = 0; j < 16; j++)
                    s += int64_t(u.q[16 * g + j]) * (256 * int64_t(xq[16 * g + j]) + int64_t(xl[16 * g + j]));
                sumi += u.scale[g] * s;
                summ += u.min[g] * (256 * int64_t(bs[g]) + int64_t(bl[g]));
            }
            const float dx = a.d[(m0 + r) * a.d_stride + b];
            acc[r] += u.d * dx * float(sumi) - u.dmin * dx * float(summ);
        }
    }
    for (int r = 0; r < n_rows; r++) out[r * out_stride] = acc[r];
}

// ---- float weights ----
template <DType T>
inline float wval(const void* w, int64_t k) {
    if constexpr (T == DType::F32) return static_cast<const float*>(w)[k];
    else if constexpr (T == DType::F16) return fp16_to_fp32(static_cast<const uint16_t*>(w)[k]);
    else return bf16_to_fp32(static_cast<const uint16_t*>(w)[k]);
}

template <DType T>
void rows_dot_float(int n_rows, const QuantAct& a, int64_t m0, const void* w_row, float* out, int64_t out_stride) {
    for (int r = 0; r < n_rows; r++) {
        const float* x = a.xf + (m0 + r) * a.k;
        float acc = 0;
        for (int64_t k = 0; k < a.k; k++) acc += x[k] * wval<T>(w_row, k);
        out[r * out_stride] = acc;
    }
}

float dot_f32_scalar(const float* a, const float* b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
float dot_f16_scalar(const float* a, const uint16_t* b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * fp16_to_fp32(b[i]);
    return s;
}
void axpy_f32_scalar(float* y, float a, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}
void axpy_f16_scalar(float* y, float a, const uint16_t* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * fp16_to_fp32(x[i]);
}

void attn_scores_scalar(const float* q, const void* base, bool f16, const int64_t* offs, int n, int hd, float scale,
                        float* scores) {
    for (int j = 0; j < n; j++)
        scores[j] = (f16 ? dot_f16_scalar(q, static_cast<const uint16_t*>(base) + offs[j], hd)
                         : dot_f32_scalar(q, static_cast<const float*>(base) + offs[j], hd)) * scale;
}

void attn_values_scalar(float* out, const float* p, const void* base, bool f16, const int64_t* offs, int n, int hd) {
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int j = 0; j < n; j++) {
        if (f16) axpy_f16_scalar(out, p[j], static_cast<const uint16_t*>(base) + offs[j], hd);
        else axpy_f32_scalar(out, p[j], static_cast<const float*>(base) + offs[j], hd);
    }
}

void f32_to_f16_scalar(uint16_t* dst, const float* x, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fp32_to_fp16(x[i]);
}

float exp_sub_sum_scalar(float* x, int64_t n, float mx) {
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (x[i] = std::exp(x[i] - mx));
    return sum;
}

void silu_mul_scalar(float* out, const float* g, const float* u, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = silu_ref(g[i]) * u[i];
}

void gelu_tanh_mul_scalar(float* out, const float* g, const float* u, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = gelu_tanh_ref(g[i]) * u[i];
}

}  // namespace

void fill_scalar_kernels(CpuKernels& k) {
    k.isa = Isa::Scalar;
    k.quantize_q8_32 = quantize_q8_32_scalar;
    k.quantize_q8_256 = quantize_q8_256_scalar;
    k.rows_dot[int(DType::F32)] = rows_dot_float<DType::F32>;
    k.rows_dot[int(DType::F16)] = rows_dot_float<DType::F16>;
    k.rows_dot[int(DType::BF16)] = rows_dot_float<DType::BF16>;
    k.rows_dot[int(DType::Q4_0)] = rows_dot_32<DType::Q4_0>;
    k.rows_dot[int(DType::Q4_1)] = rows_dot_32<DType::Q4_1>;
    k.rows_dot[int(DType::Q5_0)] = rows_dot_32<DType::Q5_0>;
    k.rows_dot[int(DType::Q5_1)] = rows_dot_32<DType::Q5_1>;
    k.rows_dot[int(DType::Q8_0)] = rows_dot_32<DType::Q8_0>;
    k.rows_dot[int(DType::Q2_K)] = rows_dot_k<DType::Q2_K>;
    k.rows_dot[int(DType::Q3_K)] = rows_dot_k<DType::Q3_K>;
    k.rows_dot[int(DType::Q4_K)] = rows_dot_k<DType::Q4_K>;
    k.rows_dot[int(DType::Q5_K)] = rows_dot_k<DType::Q5_K>;
    k.rows_dot[int(DType::Q6_K)] = rows_dot_k<DType::Q6_K>;
    k.dot_f32 = dot_f32_scalar;
    k.dot_f16 = dot_f16_scalar;
    k.axpy_f32 = axpy_f32_scalar;
    k.axpy_f16 = axpy_f16_scalar;
    k.attn_scores = attn_scores_scalar;
    k.attn_values = attn_values_scalar;
    k.f32_to_f16 = f32_to_f16_scalar;
    k.exp_sub_sum = exp_sub_sum_scalar;
    k.silu_mul = silu_mul_scalar;
    k.gelu_tanh_mul = gelu_tanh_mul_scalar;
}

CpuKernels select_kernels(const char* forced_isa) {
    std::string_view want = forced_isa ? forced_isa : "";
    if (want.empty()) {
        const char* env = std::getenv("OSPREY_CPU_ISA");
        want = env ? env : "";
    }
    if (!want.empty() && want != "scalar" && want != "avx2" && want != "avx512")
        raise(ErrorCode::InvalidArgument, "OSPREY_CPU_ISA must be scalar, avx2 or avx512, got '{}'", want);
    CpuKernels k;
    fill_scalar_kernels(k);
    if (want == "scalar") return k;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
    const bool has_avx512 = has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512vnni");
    if (has_avx2) fill_avx2_kernels(k);
    if (has_avx512 && want != "avx2") fill_avx512_kernels(k);
#endif
    return k;
}

}  // namespace osprey::backend::cpu
