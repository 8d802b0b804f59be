// The CPU backend: always compiled in. SIMD kernels (AVX-512, AVX2, scalar) are chosen at run time.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace osprey::backend {

// n_threads <= 0: one thread per core.
std::unique_ptr<Backend> make_cpu_backend(int n_threads);

}  // namespace osprey::backend
