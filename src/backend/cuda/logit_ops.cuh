// Penalties and log-probabilities on the device (Backend::apply_penalties, row_logprobs, token_logprobs; the rules
// are in backend/sampling.h), so rows that need them never travel to the host whole.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

// logits [rows, cols] in place; entries [E, 2] (id, count); row_start [rows + 1]; params [rows, 4]
void launch_apply_penalties(float* logits, const int32_t* entries, const int32_t* row_start, const float* params,
                            int64_t rows, int64_t cols, cudaStream_t stream);

// lse [rows]; top_ids, top_logprobs [rows, n] (untouched when n == 0); logits [rows, cols]; n in [0, 20]
void launch_row_logprobs(int32_t* top_ids, float* top_logprobs, float* lse, const float* logits, int64_t rows,
                         int64_t cols, int n, cudaStream_t stream);

// out[r] = logits[r, ids[r]] - lse[r]                                  out, lse [rows]; ids [rows]
void launch_token_logprobs(float* out, const float* logits, const float* lse, const int32_t* ids, int64_t rows,
                           int64_t cols, cudaStream_t stream);

}  // namespace osprey::backend::cuda
