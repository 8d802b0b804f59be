// Reference ops: plain single-threaded loops, used by the tests as independent references.
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_kernels.h"

namespace osprey::backend::cpu {

void matmul_ref(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K) {
    std::vector<float> wrow(size_t(K), 0.0f);
    const size_t row_bytes = dtype_row_bytes(w_dtype, K);
    for (int64_t n = 0; n < N; n++) {
        dequantize_row_ref(w_dtype, static_cast<const char*>(w) + size_t(n) * row_bytes, wrow.data(), K);
        for (int64_t m = 0; m < M; m++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += double(x[m * K + k]) * double(wrow[k]);
            out[m * N + n] = float(s);
        }
    }
}

void rms_norm_ref(float* out, const float* x, const float* w, int64_t rows, int64_t d, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += double(x[r * d + i]) * double(x[r * d + i]);
        const double inv = 1.0 / std::sqrt(ss / double(d) + double(eps));
        for (int64_t i = 0; i < d; i++) out[r * d + i] = float(double(x[r * d + i]) * inv * double(w[i]));
    }
}

void rope_ref(float* x, const int32_t* positions, const float* inv_freq, int64_t n_tokens, const RopeParams& p) {
    const int half = p.rotary_dim / 2;
    for (int64_t t = 0; t < n_tokens; t++) {
        for (int h = 0; h < p.n_heads; h++) {
            float* v = x + (t * p.n_heads + h) * p.head_dim;
            for (int i = 0; i < half; i++) {
                const double angle = double(positions[t]) * double(inv_freq[i]);
                const double c = std::cos(angle), s = std::sin(angle);
                const int i0 = p.neox ? i : 2 * i, i1 = p.neox ? i + half : 2 * i + 1;
                const double a = v[i0], b = v[i1];
                v[i0] = float(a * c - b * s);
                v[i1] = float(b * c + a * s);
            }
        }
    }
}

float silu_ref(float x) { return float(double(x) / (1.0 + std::exp(-double(x)))); }

float gelu_tanh_ref(float x) {
    const double v = x;
    return float(0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
}

}  // namespace osprey::backend::cpu
