// The CUDA backend: every Backend op on one NVIDIA GPU, on one stream of its own (ops run asynchronously;
// synchronize() waits). Built only with -DOSPREY_CUDA=ON (which defines OSPREY_WITH_CUDA).
#pragma once

#include <memory>

#include "backend/backend.h"

namespace osprey::backend {

// Number of usable CUDA devices; 0 when there is no driver or no GPU (never throws).
int cuda_device_count();

// A backend on GPU `device_index`. Throws Error(Unsupported) when no GPU or driver is usable and
// Error(NotFound) when device_index is not one of the devices present.
std::unique_ptr<Backend> make_cuda_backend(int device_index);

}  // namespace osprey::backend
