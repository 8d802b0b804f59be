// Element-wise f32 ops: add, add_bias, scale with optional tanh soft-capping, gather_rows.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

// out = a + b over n elements (out may alias a or b).
void launch_add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
// x[r, c] += bias[c] for x [rows, cols].
void launch_add_bias(float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// x = x * s, then softcap * tanh(x / softcap) when softcap > 0.
void launch_scale(float* x, int64_t n, float s, float softcap, cudaStream_t stream);
// out[i, :] = x[rows[i], :] for out [n_rows, d].
void launch_gather_rows(float* out, const float* x, const int32_t* rows, int64_t n_rows, int64_t d,
                        cudaStream_t stream);
// dst[dst_index[k]] = src[src_index[k]] for k < n.
void launch_copy_indexed_i32(int32_t* dst, const int32_t* dst_index, const int32_t* src, const int32_t* src_index,
                             int64_t n, cudaStream_t stream);

// ids[r] = first index of the maximum of logits row r (one block per row; ties go to the smaller index).
// Columns of src [rows, sum of n] into parts: out[p] [rows, n[p]] = src[:, first column of p ...].
struct ColumnSplit {
    float* out[4];
    int64_t n[4];
    int n_parts;
};
void launch_split_columns(const ColumnSplit& split, const float* src, int64_t rows, cudaStream_t stream);

void launch_argmax_rows(int32_t* ids, const float* logits, int64_t rows, int64_t cols, cudaStream_t stream);

}  // namespace osprey::backend::cuda
