// Small-batch matrix-vector kernel: one warp per weight row n, each lane walks 8-element groups of the row
// (lane, lane + 32, ...), dequantizes them once and multiplies them with up to MR rows of x.
#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemv_quant.cuh"

namespace osprey::backend::cuda {

namespace {

constexpr int kWarpsPerBlock = 4;

template <DType DT, int MR>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
gemv_kernel(float* __restrict__ out, const float* __restrict__ x, const uint8_t* __restrict__ w, int64_t M,
            int64_t N, int64_t K, size_t row_bytes) {
    const int lane = threadIdx.x & 31;
    const int64_t n = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
    const int64_t m0 = int64_t(blockIdx.y) * MR;
    if (n >= N) return;
    const int n_rows = int(M - m0 < MR ? M - m0 : MR);
    const uint8_t* row = w + size_t(n) * row_bytes;
    const float* xr = x + m0 * K;

    float acc[MR];
#pragma unroll
    for (int r = 0; r < MR; r++) acc[r] = 0.0f;

    const int64_t n_groups = K / 8;
    for (int64_t g = lane; g < n_groups; g += 32) {
        float wv[8];
        dequant8<DT>(row, g, wv);
#pragma unroll
        for (int r = 0; r < MR; r++) {
            if (r < n_rows) {
                const float* xp = xr + r * K + 8 * g;
#pragma unroll
                for (int i = 0; i < 8; i++) acc[r] = fmaf(wv[i], xp[i], acc[r]);
            }
        }
    }
    if constexpr (DT == DType::F32 || DT == DType::F16 || DT == DType::BF16) {
        // Plain rows may end in a partial group.
        const int64_t e = n_groups * 8 + lane;
        if (e < K) {
            const float wv = load1<DT>(row, e);
#pragma unroll
            for (int r = 0; r < MR; r++)
                if (r < n_rows) acc[r] = fmaf(wv, xr[r * K + e], acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < MR; r++) {
        float v = acc[r];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && r < n_rows) out[(m0 + r) * N + n] = v;
    }
}

template <DType DT>
void launch_dt(float* out, const float* x, const void* w, int64_t M, int64_t N, int64_t K, cudaStream_t stream) {
    const size_t row_bytes = dtype_row_bytes(DT, K);
    const dim3 block(kWarpsPerBlock * 32);
    const unsigned gx = unsigned((N + kWarpsPerBlock - 1) / kWarpsPerBlock);
    const auto* wb = static_cast<const uint8_t*>(w);
    // Rows per launch group: the fewest of 1, 2, 4, 8 that covers M (M <= 8), so w is read once.
    if (M == 1) gemv_kernel<DT, 1><<<dim3(gx, 1), block, 0, stream>>>(out, x, wb, M, N, K, row_bytes);
    else if (M == 2) gemv_kernel<DT, 2><<<dim3(gx, 1), block, 0, stream>>>(out, x, wb, M, N, K, row_bytes);
    else if (M <= 4) gemv_kernel<DT, 4><<<dim3(gx, 1), block, 0, stream>>>(out, x, wb, M, N, K, row_bytes);
    else gemv_kernel<DT, 8><<<dim3(gx, unsigned((M + 7) / 8)), block, 0, stream>>>(out, x, wb, M, N, K, row_bytes);
}

}  // namespace

bool gemv_supported(DType w_dtype) {
    return kernel_weight_dtype(w_dtype);
}

void launch_gemv(float* out, const float* x, DType w_dtype, const void* w, int64_t M, int64_t N, int64_t K,
                 cudaStream_t stream) {
    dispatch_weight_dtype(w_dtype, [&]<DType DT>() { launch_dt<DT>(out, x, w, M, N, K, stream); });
}

}  // namespace osprey::backend::cuda
