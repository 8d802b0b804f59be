#include "backend/cpu/cpu_kernels.h"

namespace osprey::backend::cpu {
void fill_avx2_kernels(CpuKernels&) {}
}  // namespace osprey::backend::cpu
