// Scalar reference dequantizers and quantizers for the GGUF/ggml block layouts (core/quant_blocks.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/half.h"

namespace osprey::backend::cpu {

namespace {

// 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block from its 12 packed bytes.
inline void get_scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void dequant_q4_0(const BlockQ4_0* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d);
        for (int j = 0; j < 16; j++) {
            y[j] = float((x[b].qs[j] & 0xF) - 8) * d;
            y[j + 16] = float((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void dequant_q4_1(const BlockQ4_1* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
        for (int j = 0; j < 16; j++) {
            y[j] = float(x[b].qs[j] & 0xF) * d + m;
            y[j + 16] = float(x[b].qs[j] >> 4) * d + m;
        }
    }
}

void dequant_q5_0(const BlockQ5_0* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d);
        uint32_t qh;
        std::memcpy(&qh, x[b].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = float(((x[b].qs[j] & 0xF) | (h0 << 4)) - 16) * d;
            y[j + 16] = float(((x[b].qs[j] >> 4) | (h1 << 4)) - 16) * d;
        }
    }
}

void dequant_q5_1(const BlockQ5_1* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d), m = fp16_to_fp32(x[b].m);
        uint32_t qh;
        std::memcpy(&qh, x[b].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;
            y[j] = float((x[b].qs[j] & 0xF) | (h0 << 4)) * d + m;
            y[j + 16] = float((x[b].qs[j] >> 4) | (h1 << 4)) * d + m;
        }
    }
}

void dequant_q8_0(const BlockQ8_0* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d);
        for (int j = 0; j < 32; j++) y[j] = float(x[b].qs[j]) * d;
    }
}

void dequant_q8_1(const BlockQ8_1* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += 32) {
        const float d = fp16_to_fp32(x[b].d);
        for (int j = 0; j < 32; j++) y[j] = float(x[b].qs[j]) * d;
    }
}

void dequant_q2_k(const BlockQ2_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
        const uint8_t* q = x[b].qs;
        int is = 0;
        for (int n = 0; n < kQK_K; n += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = x[b].scales[is++];
                    const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
            q += 32;
        }
    }
}

void dequant_q3_k(const BlockQ3_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = fp16_to_fp32(x[b].d);
        // 16 6-bit scales: low 4 bits in bytes 0..7 (two per byte), high 2 bits in bytes 8..11.
        int8_t sc[16];
        for (int i = 0; i < 16; i++) {
            const int lo = (i < 8) ? (x[b].scales[i] & 0xF) : (x[b].scales[i - 8] >> 4);
            const int hi = (x[b].scales[8 + (i % 4)] >> (2 * (i / 4))) & 3;
            sc[i] = int8_t((lo | (hi << 4)) - 32);
        }
        const uint8_t* q = x[b].qs;
        const uint8_t* hm = x[b].hmask;
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < kQK_K; n += 128) {
            for (int shift = 0; shift < 8; shift += 2, m = uint8_t(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d * float(sc[is++]);
                    for (int l = 0; l < 16; l++) {
                        const int i = l + 16 * half;
                        const int v = ((q[i] >> shift) & 3) - ((hm[i] & m) ? 0 : 4);
                        *y++ = dl * float(v);
                    }
                }
            }
            q += 32;
        }
    }
}

void dequant_q4_k(const BlockQ4_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
        const uint8_t* q = x[b].qs;
        for (int j = 0; j < 4; j++, q += 32) {
            int sc, m;
            get_scale_min_k4(2 * j, x[b].scales, sc, m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            get_scale_min_k4(2 * j + 1, x[b].scales, sc, m);
            const float d2 = d * float(sc), m2 = dmin * float(m);
            for (int l = 0; l < 32; l++) *y++ = d1 * float(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * float(q[l] >> 4) - m2;
        }
    }
}

void dequant_q5_k(const BlockQ5_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = fp16_to_fp32(x[b].d), dmin = fp16_to_fp32(x[b].dmin);
        const uint8_t* ql = x[b].qs;
        const uint8_t* qh = x[b].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 4; j++, ql += 32, u1 = uint8_t(u1 << 2), u2 = uint8_t(u2 << 2)) {
            int sc, m;
            get_scale_min_k4(2 * j, x[b].scales, sc, m);
            const float d1 = d * float(sc), m1 = dmin * float(m);
            get_scale_min_k4(2 * j + 1, x[b].scales, sc, m);
            const float d2 = d * float(sc), m2 = dmin * float(m);
            for (int l = 0; l < 32; l++) *y++ = d1 * float((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * float((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

void dequant_q6_k(const BlockQ6_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++) {
        const float d = fp16_to_fp32(x[b].d);
        const uint8_t* ql = x[b].ql;
        const uint8_t* qh = x[b].qh;
        const int8_t* sc = x[b].scales;
        for (int n = 0; n < kQK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * float(sc[is + 0]) * float(q1);
                y[l + 32] = d * float(sc[is + 2]) * float(q2);
                y[l + 64] = d * float(sc[is + 4]) * float(q3);
                y[l + 96] = d * float(sc[is + 6]) * float(q4);
            }
        }
    }
}

void dequant_q8_k(const BlockQ8_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, y += kQK_K)
        for (int j = 0; j < kQK_K; j++) y[j] = x[b].d * float(x[b].qs[j]);
}

// ---- quantizers ----

inline int nearest_int(float v) { return int(std::nearbyint(v)); }

void quant_q4_0(const float* x, BlockQ4_0* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
        const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            const int q0 = std::clamp(nearest_int(x[j] * id) + 8, 0, 15);
            const int q1 = std::clamp(nearest_int(x[j + 16] * id) + 8, 0, 15);
            y[b].qs[j] = uint8_t(q0 | (q1 << 4));
        }
    }
}

void quant_q4_1(const float* x, BlockQ4_1* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 32) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < 32; j++) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
        const float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        y[b].m = fp32_to_fp16(mn);
        for (int j = 0; j < 16; j++) {
            const int q0 = std::clamp(nearest_int((x[j] - mn) * id), 0, 15);
            const int q1 = std::clamp(nearest_int((x[j + 16] - mn) * id), 0, 15);
            y[b].qs[j] = uint8_t(q0 | (q1 << 4));
        }
    }
}

template <typename Block, bool kHasMin>
void quant_q5(const float* x, Block* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 32) {
        float d, mn = 0;
        if constexpr (kHasMin) {
            float mx = x[0];
            mn = x[0];
            for (int j = 1; j < 32; j++) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
            d = (mx - mn) / 31.0f;
        } else {
            float amax = 0, max = 0;
            for (int j = 0; j < 32; j++)
                if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
            d = max / -16.0f;
        }
        const float id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        if constexpr (kHasMin) y[b].m = fp32_to_fp16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0, q1;
            if constexpr (kHasMin) {
                q0 = std::clamp(nearest_int((x[j] - mn) * id), 0, 31);
                q1 = std::clamp(nearest_int((x[j + 16] - mn) * id), 0, 31);
            } else {
                q0 = std::clamp(nearest_int(x[j] * id) + 16, 0, 31);
                q1 = std::clamp(nearest_int(x[j + 16] * id) + 16, 0, 31);
            }
            y[b].qs[j] = uint8_t((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= uint32_t(q0 >> 4) << j;
            qh |= uint32_t(q1 >> 4) << (j + 16);
        }
        std::memcpy(y[b].qh, &qh, 4);
    }
}

// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins: x ~= d * sc * q - dmin * m.
void quant_q4_k(const float* x, BlockQ4_K* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += kQK_K) {
        float scale[8], minv[8];
        float max_scale = 0, max_min = 0;
        for (int s = 0; s < 8; s++) {
            float mn = 0, mx = x[32 * s];
            for (int j = 0; j < 32; j++) mn = std::min(mn, x[32 * s + j]), mx = std::max(mx, x[32 * s + j]);
            scale[s] = (mx - mn) / 15.0f;
            minv[s] = -mn;
            max_scale = std::max(max_scale, scale[s]);
            max_min = std::max(max_min, minv[s]);
        }
        const float d = max_scale / 63.0f, dmin = max_min / 63.0f;
        y[b].d = fp32_to_fp16(d);
        y[b].dmin = fp32_to_fp16(dmin);
        const float dq = fp16_to_fp32(y[b].d), dminq = fp16_to_fp32(y[b].dmin);
        uint8_t sc[8], m[8];
        for (int s = 0; s < 8; s++) {
            sc[s] = uint8_t(std::clamp(dq > 0 ? nearest_int(scale[s] / dq) : 0, 0, 63));
            m[s] = uint8_t(std::clamp(dminq > 0 ? nearest_int(minv[s] / dminq) : 0, 0, 63));
        }
        for (int j = 0; j < 4; j++) {
            y[b].scales[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            y[b].scales[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
            y[b].scales[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
        }
        for (int j = 0; j < 4; j++) {
            for (int l = 0; l < 32; l++) {
                int q[2];
                for (int h = 0; h < 2; h++) {
                    const int s = 2 * j + h;
                    const float ds = dq * float(sc[s]), ms = dminq * float(m[s]);
                    q[h] = ds > 0 ? std::clamp(nearest_int((x[32 * s + l] + ms) / ds), 0, 15) : 0;
                }
                y[b].qs[32 * j + l] = uint8_t(q[0] | (q[1] << 4));
            }
        }
    }
}

// Q6_K: 16 sub-blocks of 16 with int8 scales: x ~= d * sc * (q - 32), q in 0..63.
void quant_q6_k(const float* x, BlockQ6_K* y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += kQK_K) {
        float scale[16], max_abs_scale = 0;
        for (int s = 0; s < 16; s++) {
            float amax = 0;
            for (int j = 0; j < 16; j++) amax = std::max(amax, std::fabs(x[16 * s + j]));
            scale[s] = amax / 31.0f;
            max_abs_scale = std::max(max_abs_scale, scale[s]);
        }
        const float d = max_abs_scale / 127.0f;
        y[b].d = fp32_to_fp16(d);
        const float dq = fp16_to_fp32(y[b].d);
        int q[kQK_K];
        for (int s = 0; s < 16; s++) {
            const int sc = std::clamp(dq > 0 ? nearest_int(scale[s] / dq) : 0, -128, 127);
            y[b].scales[s] = int8_t(sc);
            const float ds = dq * float(sc);
            for (int j = 0; j < 16; j++)
                q[16 * s + j] = ds != 0 ? std::clamp(nearest_int(x[16 * s + j] / ds), -32, 31) + 32 : 32;
        }
        // Inverse of dequant_q6_k's layout.
        for (int n = 0; n < 2; n++) {
            uint8_t* ql = y[b].ql + 64 * n;
            uint8_t* qh = y[b].qh + 32 * n;
            const int* qq = q + 128 * n;
            for (int l = 0; l < 32; l++) {
                ql[l] = uint8_t((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
                ql[l + 32] = uint8_t((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
                qh[l] = uint8_t((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) | ((qq[l + 64] >> 4) << 4) |
                                ((qq[l + 96] >> 4) << 6));
            }
        }
    }
}

}  // namespace

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = fp32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[b].qs[j] = int8_t(nearest_int(x[j] * id));
    }
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[b].qs[j] = int8_t(nearest_int(x[j] * id));
            sum += y[b].qs[j];
        }
        y[b].d = fp32_to_fp16(d);
        y[b].s = fp32_to_fp16(d * float(sum));
    }
}

void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n) {
    for (int64_t b = 0; b < n / kQK_K; b++, x += kQK_K) {
        float amax = 0;
        for (int j = 0; j < kQK_K; j++) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        y[b].d = d;
        for (int j = 0; j < kQK_K; j++) y[b].qs[j] = int8_t(nearest_int(x[j] * id));
        for (int g = 0; g < kQK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[b].qs[16 * g + j];
            y[b].bsums[g] = int16_t(s);
        }
    }
}

bool dequantize_supported(DType dtype) {
    switch (dtype) {
        case DType::F32: case DType::F16: case DType::BF16:
        case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q8_1:
        case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q8_K:
            return true;
        default:
            return false;
    }
}

void dequantize_row_ref(DType dtype, const void* x, float* y, int64_t n) {
    const int64_t nb = n / dtype_traits(dtype).block_size;
    switch (dtype) {
        case DType::F32: std::memcpy(y, x, size_t(n) * 4); return;
        case DType::F16:
            for (int64_t i = 0; i < n; i++) y[i] = fp16_to_fp32(static_cast<const uint16_t*>(x)[i]);
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; i++) y[i] = bf16_to_fp32(static_cast<const uint16_t*>(x)[i]);
            return;
        case DType::Q4_0: dequant_q4_0(static_cast<const BlockQ4_0*>(x), y, nb); return;
        case DType::Q4_1: dequant_q4_1(static_cast<const BlockQ4_1*>(x), y, nb); return;
        case DType::Q5_0: dequant_q5_0(static_cast<const BlockQ5_0*>(x), y, nb); return;
        case DType::Q5_1: dequant_q5_1(static_cast<const BlockQ5_1*>(x), y, nb); return;
        case DType::Q8_0: dequant_q8_0(static_cast<const BlockQ8_0*>(x), y, nb); return;
        case DType::Q8_1: dequant_q8_1(static_cast<const BlockQ8_1*>(x), y, nb); return;
        case DType::Q2_K: dequant_q2_k(static_cast<const BlockQ2_K*>(x), y, nb); return;
        case DType::Q3_K: dequant_q3_k(static_cast<const BlockQ3_K*>(x), y, nb); return;
        case DType::Q4_K: dequant_q4_k(static_cast<const BlockQ4_K*>(x), y, nb); return;
        case DType::Q5_K: dequant_q5_k(static_cast<const BlockQ5_K*>(x), y, nb); return;
        case DType::Q6_K: dequant_q6_k(static_cast<const BlockQ6_K*>(x), y, nb); return;
        case DType::Q8_K: dequant_q8_k(static_cast<const BlockQ8_K*>(x), y, nb); return;
        default: raise(ErrorCode::Unsupported, "dequantize: unsupported dtype {}", dtype_name(dtype));
    }
}

bool quantize_supported(DType dtype) {
    switch (dtype) {
        case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
        case DType::Q5_1: case DType::Q8_0: case DType::Q8_1: case DType::Q8_K: case DType::Q4_K: case DType::Q6_K:
            return true;
        default:
            return false;
    }
}

void quantize_row_ref(DType dtype, const float* x, void* y, int64_t n) {
    const int64_t nb = n / dtype_traits(dtype).block_size;
    switch (dtype) {
        case DType::F32: std::memcpy(y, x, size_t(n) * 4); return;
        case DType::F16:
            for (int64_t i = 0; i < n; i++) static_cast<uint16_t*>(y)[i] = fp32_to_fp16(x[i]);
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; i++) static_cast<uint16_t*>(y)[i] = fp32_to_bf16(x[i]);
            return;
        case DType::Q4_0: quant_q4_0(x, static_cast<BlockQ4_0*>(y), nb); return;
        case DType::Q4_1: quant_q4_1(x, static_cast<BlockQ4_1*>(y), nb); return;
        case DType::Q5_0: quant_q5<BlockQ5_0, false>(x, static_cast<BlockQ5_0*>(y), nb); return;
        case DType::Q5_1: quant_q5<BlockQ5_1, true>(x, static_cast<BlockQ5_1*>(y), nb); return;
        case DType::Q8_0: quantize_row_q8_0_ref(x, static_cast<BlockQ8_0*>(y), n); return;
        case DType::Q8_1: quantize_row_q8_1_ref(x, static_cast<BlockQ8_1*>(y), n); return;
        case DType::Q8_K: quantize_row_q8_K_ref(x, static_cast<BlockQ8_K*>(y), n); return;
        case DType::Q4_K: quant_q4_k(x, static_cast<BlockQ4_K*>(y), nb); return;
        case DType::Q6_K: quant_q6_k(x, static_cast<BlockQ6_K*>(y), nb); return;
        default: raise(ErrorCode::Unsupported, "quantize: unsupported dtype {}", dtype_name(dtype));
    }
}

}  // namespace osprey::backend::cpu
