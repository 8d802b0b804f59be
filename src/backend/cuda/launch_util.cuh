// Small helpers shared by the kernel files: grid sizing, warp reductions and programmatic dependent launch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace osprey::backend::cuda {

// Whether every pointer is 16-byte aligned (float4 / uint4 access).
template <typename... P>
inline bool aligned16(const P*... p) {
    return ((reinterpret_cast<uintptr_t>(p) | ...) % 16) == 0;
}

// Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 16).
inline unsigned grid_1d(int64_t n, int threads) {
    const int64_t blocks = (n + threads - 1) / threads;
    constexpr int64_t kMax = int64_t(65535) * 16;
    return unsigned(blocks < 1 ? 1 : (blocks > kMax ? kMax : blocks));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Programmatic dependent launch (sm_90): a kernel launched with programmaticStreamSerializationAllowed may start
// while the kernel before it runs; pdl_wait() blocks until that kernel has finished and its writes are visible (a
// no-op in a plain launch). pdl_release() lets the next kernel, if it was launched so, start now: it must call
// pdl_wait() before it reads what this one writes.
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_release() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }

// Kinds of kernel launched as programmatic dependents: they start their independent loads (weights, norm weights,
// positions and frequencies) while the kernel before them finishes, then wait for it (pdl_wait). Decode attention
// is launched plainly: as a dependent it made the 8B decode step slower (219 vs 221-224 tok/s on the H200).
enum class PdlKind { Gemv, Norm, Rope };

// Whether kernels of `kind` are launched as programmatic dependents. OSPREY_CUDA_PDL (comparisons): unset, every
// kind; "0", none; otherwise the kinds named in a comma-separated list of gemv, norm, rope.
inline bool pdl_enabled(PdlKind kind) {
    static const char* const env = std::getenv("OSPREY_CUDA_PDL");
    if (env == nullptr) return true;
    static const char* const names[] = {"gemv", "norm", "rope"};
    return std::strstr(env, names[int(kind)]) != nullptr;
}

template <typename Kern>
void allow_smem(Kern* kernel, size_t bytes) {
    if (bytes > 48 * 1024) cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// kernel<<<grid, threads, smem, stream>>>(args...), as a programmatic dependent of the kernel before it when pdl.
template <typename... KArgs, typename... Args>
void launch_kernel(void (*kernel)(KArgs...), dim3 grid, int threads, size_t smem, cudaStream_t stream, bool pdl,
                   Args&&... args) {
    allow_smem(kernel, smem);
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(unsigned(threads));
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);  // errors: the caller's cudaGetLastError()
}

}  // namespace osprey::backend::cuda
