// Sampling on the device: ids [rows] = backend::sample_row of each row of logits [rows, cols] with its SamplingRow
// (params: rows x 32 bytes on the device). See backend/sampling.h for the definition.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

void launch_sample_rows(int32_t* ids, const float* logits, const void* params, int64_t rows, int64_t cols,
                        cudaStream_t stream);

}  // namespace osprey::backend::cuda
