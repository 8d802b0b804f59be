#include "backend/cuda/elementwise.cuh"

#include <climits>
#include <cmath>
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

__global__ void split_columns_kernel(ColumnSplit split, const float* src, int64_t rows, int64_t total) {
    OSP_GRID_STRIDE(i, rows * total) {
        const int64_t r = i / total;
        int64_t c = i - r * total;
        int p = 0;
        while (p + 1 < split.n_parts && c >= split.n[p]) c -= split.n[p++];
        split.out[p][r * split.n[p] + c] = src[i];
    }
}

#undef OSP_GRID_STRIDE

}  // namespace

void launch_split_columns(const ColumnSplit& split, const float* src, int64_t rows, cudaStream_t stream) {
    int64_t total = 0;
    for (int p = 0; p < split.n_parts; p++) total += split.n[p];
    if (rows * total > 0) split_columns_kernel<<<grid_1d(rows * total, 256), 256, 0, stream>>>(split, src, rows, total);
}

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

namespace {

__global__ void copy_indexed_i32_kernel(int32_t* dst, const int32_t* dst_index, const int32_t* src,
                                        const int32_t* src_index, int64_t n) {
    const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (k < n) dst[dst_index[k]] = src[src_index[k]];
}

}  // namespace

void launch_copy_indexed_i32(int32_t* dst, const int32_t* dst_index, const int32_t* src, const int32_t* src_index,
                             int64_t n, cudaStream_t stream) {
    if (n > 0) copy_indexed_i32_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(dst, dst_index, src, src_index, n);
}

namespace {

// (value, index) with the larger value, or the smaller index on equal values: the host sampler's first maximum.
__device__ __forceinline__ void arg_better(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

__global__ void argmax_rows_kernel(int32_t* ids, const float* logits, int64_t cols) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* row = logits + int64_t(blockIdx.x) * cols;
    float v = -INFINITY;
    int i = INT_MAX;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) arg_better(v, i, row[c], int(c));
    for (int o = 16; o > 0; o >>= 1) arg_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = v, si[threadIdx.x >> 5] = i;
    __syncthreads();
    if (threadIdx.x < 32) {
        const int n_warps = int(blockDim.x >> 5);
        v = threadIdx.x < n_warps ? sv[threadIdx.x] : -INFINITY;
        i = threadIdx.x < n_warps ? si[threadIdx.x] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1) arg_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
        if (threadIdx.x == 0) ids[blockIdx.x] = i == INT_MAX ? 0 : i;  // an all-NaN row gives 0, as on the host
    }
}

}  // namespace

void launch_argmax_rows(int32_t* ids, const float* logits, int64_t rows, int64_t cols, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return;
    argmax_rows_kernel<<<unsigned(rows), 1024, 0, stream>>>(ids, logits, cols);
}

}  // namespace osprey::backend::cuda
