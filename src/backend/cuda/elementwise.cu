#include "backend/cuda/elementwise.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace {

#define OSP_GRID_STRIDE(i, n) \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void add_kernel(float* out, const float* a, const float* b, int64_t n) {
    OSP_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void add_bias_kernel(float* x, const float* bias, int64_t n, int64_t cols) {
    OSP_GRID_STRIDE(i, n) x[i] += bias[i % cols];
}

__global__ void scale_kernel(float* x, int64_t n, float s, float softcap) {
    OSP_GRID_STRIDE(i, n) {
        float v = x[i] * s;
        if (softcap > 0.0f) v = softcap * tanhf(v / softcap);
        x[i] = v;
    }
}

__global__ void gather_rows_kernel(float* out, const float* x, const int32_t* rows, int64_t n, int64_t d) {
    OSP_GRID_STRIDE(i, n) out[i] = x[int64_t(rows[i / d]) * d + i % d];
}

#undef OSP_GRID_STRIDE

}  // namespace

void launch_add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
    if (n > 0) add_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(out, a, b, n);
}

void launch_add_bias(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n > 0) add_bias_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(x, bias, n, cols);
}

void launch_scale(float* x, int64_t n, float s, float softcap, cudaStream_t stream) {
    if (n > 0) scale_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(x, n, s, softcap);
}

void launch_gather_rows(float* out, const float* x, const int32_t* rows, int64_t n_rows, int64_t d,
                        cudaStream_t stream) {
    const int64_t n = n_rows * d;
    if (n > 0) gather_rows_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(out, x, rows, n, d);
}

}  // namespace osprey::backend::cuda
