// AVX-512 (F/BW/VL/DQ/VNNI) kernels: the shared 256-bit kernels with vpdpbusd/vpdpwssd and mask moves.
#define OSP_SIMD_NS osprey_simd_avx512
#define OSP_VNNI 1
#include "backend/cpu/simd_kernels_impl.h"

namespace osprey::backend::cpu {

void fill_avx512_kernels(CpuKernels& k) {
    osprey_simd_avx512::fill(k);
    k.isa = Isa::Avx512;
}

}  // namespace osprey::backend::cpu
