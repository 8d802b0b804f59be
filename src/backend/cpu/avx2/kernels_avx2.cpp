// AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c; used only when the CPU has them).
#define OSP_SIMD_NS osprey_simd_avx2
#include "backend/cpu/simd_kernels_impl.h"

namespace osprey::backend::cpu {

void fill_avx2_kernels(CpuKernels& k) {
    osprey_simd_avx2::fill(k);
    k.isa = Isa::Avx2;
}

}  // namespace osprey::backend::cpu
