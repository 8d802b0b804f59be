// The quantized-weight tensor-core GEMM of gemm_quant.cuh.
//
// CTA tile: BN = 4 * WR weight rows (4 warps of WR rows each) by BM x rows; K advances 256 elements per stage
// (one K-quant super-block, or 8 blocks of 32). A stage's raw weight bytes and f16 x rows land in shared memory by
// cp.async, STAGES deep. The weights are the MMA's A operand (16 weight rows per m16 tile), x the B operand (8 x
// rows per n8 tile), so small batches waste little of the tensor core's width. K is permuted inside each 32-element
// chunk so that one thread's A registers are one 8-element group of one weight row (what dequant8 produces): in
// mma k16 #h of chunk c, thread t's k slots {2t, 2t+1, 2t+8, 2t+9} stand for elements 32c + 8t + 4h + {0, 1, 2, 3};
// the x fragment uses the same mapping (one 16-byte shared load of 8 consecutive elements), so the dot products
// are unchanged and each weight is dequantized exactly once per CTA.
#include <algorithm>
#include <cstdlib>

#include "backend/cuda/dequant.cuh"
#include "backend/cuda/gemm_quant.cuh"
#include "backend/cuda/launch_util.cuh"
#include "backend/cuda/mma_ptx.cuh"

namespace osprey::backend::cuda {

namespace {

// Tile configurations: BM x rows, WR weight rows per warp, warps (BN = warps * WR weight rows), pipeline stages.
struct QgConfig {
    int bm, wr, warps, stages;
};
// Measured on the H200 (Llama-3.1-8B layer shapes, Q4_K and Q6_K): the 8-warp tiles (3..7) beat the 4-warp ones
// (0..2) at every M; config_for picks among them. 0..2 stay for comparison (OSPREY_QGEMM_CONFIG).
constexpr QgConfig kConfigs[] = {{16, 16, 4, 4}, {32, 32, 4, 3}, {64, 32, 4, 2}, {16, 16, 8, 3},
                                 {32, 16, 8, 3}, {64, 16, 8, 2}, {64, 32, 8, 2}, {128, 16, 8, 2}};
constexpr int kNumConfigs = int(sizeof(kConfigs) / sizeof(kConfigs[0]));

constexpr int kStageK = 256;                 // K elements per pipeline stage
constexpr int kXStride = kStageK + 32;       // halves per x row in shared memory (576 bytes: conflict-free loads)

template <DType DT>
struct QgType {
    static constexpr int block_elems = (DT == DType::Q4_K || DT == DType::Q5_K || DT == DType::Q6_K) ? 256 : 32;
    static constexpr int block_bytes = DT == DType::Q4_0   ? 18
                                       : DT == DType::Q4_1 ? 20
                                       : DT == DType::Q8_0 ? 34
                                       : DT == DType::Q4_K ? 144
                                       : DT == DType::Q5_K ? 176
                                                           : 210;
    static constexpr int stage_bytes = kStageK / block_elems * block_bytes;  // one row's raw bytes per stage
    // A row's stage is copied as the 16-byte aligned window around it: up to 14 bytes of lead (rows start on even
    // bytes), rounded up to whole 16-byte pieces.
    static constexpr int slot_bytes = (stage_bytes + 14 + 15) / 16 * 16;
};

// ---------------------------------------------------------------- dequantization into fragments

// 64 bits at a 2-byte aligned shared address (three aligned words and funnel shifts).
__device__ __forceinline__ void ld64(const uint8_t* p, uint32_t& lo, uint32_t& hi) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const uint32_t* q = reinterpret_cast<const uint32_t*>(a & ~uintptr_t(3));
    const uint32_t s = uint32_t(a & 2) * 8, w0 = q[0], w1 = q[1], w2 = q[2];
    lo = __funnelshift_r(w0, w1, s);
    hi = __funnelshift_r(w1, w2, s);
}
__device__ __forceinline__ uint16_t ld16s(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }

// float(byte i of w) - bias, exactly (w's bytes < 256; 2^23 + byte is exact in f32): an integer-to-float conversion
// without the slow I2F.
template <int I>
__device__ __forceinline__ float byte_f(uint32_t w, float bias) {
    return __int_as_float(int(__byte_perm(w, 0x4Bu, 0x4550u + I))) - (8388608.0f + bias);
}

// Two words of 4 small unsigned codes (bytes) -> 8 floats: w[i] = scale * (code_i - bias) - sub, computed as
// dequant8 does (float(code - bias) is exact; scale * f - sub contracts to the same fma).
template <bool kFma>
__device__ __forceinline__ void codes_to_frag(uint32_t c0, uint32_t c1, float bias, float scale, float sub,
                                              uint32_t (&a)[4]) {
    float v[8];
    v[0] = byte_f<0>(c0, bias), v[1] = byte_f<1>(c0, bias), v[2] = byte_f<2>(c0, bias), v[3] = byte_f<3>(c0, bias);
    v[4] = byte_f<0>(c1, bias), v[5] = byte_f<1>(c1, bias), v[6] = byte_f<2>(c1, bias), v[7] = byte_f<3>(c1, bias);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float lo, hi;
        if constexpr (kFma) lo = scale * v[2 * i] - sub, hi = scale * v[2 * i + 1] - sub;
        else lo = v[2 * i] * scale, hi = v[2 * i + 1] * scale;
        const __half2 h = __floats2half2_rn(lo, hi);
        a[i] = *reinterpret_cast<const uint32_t*>(&h);
    }
}

// Elements [8 gl, 8 gl + 8) of the stage (256 elements) whose raw bytes start at p, as 4 packed f16 pairs.
template <DType DT>
__device__ __forceinline__ void dq8(const uint8_t* p, int gl, uint32_t (&a)[4]) {
    uint32_t w0, w1;
    if constexpr (DT == DType::Q8_0) {
        const uint8_t* b = p + 34 * (gl >> 2);
        const float d = h2f(ld16s(b));
        ld64(b + 2 + 8 * (gl & 3), w0, w1);
        codes_to_frag<false>(w0 ^ 0x80808080u, w1 ^ 0x80808080u, 128.0f, d, 0.0f, a);  // float(q) * d
    } else if constexpr (DT == DType::Q4_0 || DT == DType::Q4_1) {
        constexpr int bb = DT == DType::Q4_0 ? 18 : 20, qs = DT == DType::Q4_0 ? 2 : 4;
        const uint8_t* b = p + bb * (gl >> 2);
        const int sub = gl & 3, shift = (sub >> 1) * 4;
        const float d = h2f(ld16s(b));
        ld64(b + qs + (sub & 1) * 8, w0, w1);
        w0 = (w0 >> shift) & 0x0F0F0F0Fu, w1 = (w1 >> shift) & 0x0F0F0F0Fu;
        if constexpr (DT == DType::Q4_0) {
            codes_to_frag<false>(w0, w1, 8.0f, d, 0.0f, a);  // float(q - 8) * d
        } else {
            const float m = h2f(ld16s(b + 2));
            codes_to_frag<true>(w0, w1, 0.0f, d, -m, a);     // float(q) * d + m
        }
    } else if constexpr (DT == DType::Q4_K || DT == DType::Q5_K) {
        const int j = gl >> 3, hi = (gl >> 2) & 1, l0 = 8 * (gl & 3);
        int sc, m;
        get_scale_min_k4(2 * j + hi, p + 4, sc, m);
        const float dl = h2f(ld16s(p)) * float(sc), ml = h2f(ld16s(p + 2)) * float(m);
        constexpr int qs = DT == DType::Q4_K ? 16 : 48;
        ld64(p + qs + 32 * j + l0, w0, w1);
        w0 = (w0 >> (4 * hi)) & 0x0F0F0F0Fu, w1 = (w1 >> (4 * hi)) & 0x0F0F0F0Fu;
        if constexpr (DT == DType::Q5_K) {
            uint32_t h0, h1;
            ld64(p + 16 + l0, h0, h1);
            const int bit = 2 * j + hi;
            w0 |= ((h0 >> bit) & 0x01010101u) << 4, w1 |= ((h1 >> bit) & 0x01010101u) << 4;
        }
        codes_to_frag<true>(w0, w1, 0.0f, dl, ml, a);  // dl * float(q) - ml
    } else if constexpr (DT == DType::Q6_K) {
        const int n = gl >> 4, quarter = (gl >> 2) & 3, l0 = 8 * (gl & 3);
        const float d = h2f(ld16s(p + 208)) * float(int8_t(p[192 + 8 * n + l0 / 16 + 2 * quarter]));
        uint32_t h0, h1;
        ld64(p + 64 * n + (quarter & 1) * 32 + l0, w0, w1);
        ld64(p + 128 + 32 * n + l0, h0, h1);
        const int ls = (quarter >> 1) * 4, hs = 2 * quarter;
        w0 = ((w0 >> ls) & 0x0F0F0F0Fu) | (((h0 >> hs) & 0x03030303u) << 4);
        w1 = ((w1 >> ls) & 0x0F0F0F0Fu) | (((h1 >> hs) & 0x03030303u) << 4);
        codes_to_frag<false>(w0, w1, 32.0f, d, 0.0f, a);  // d * float(q - 32)
    }
}

// ---------------------------------------------------------------- the kernel

template <DType DT, int C>
struct QgShape {
    static constexpr int BM = kConfigs[C].bm, WR = kConfigs[C].wr, STAGES = kConfigs[C].stages;
    static constexpr int threads = 32 * kConfigs[C].warps;
    static constexpr int bn = kConfigs[C].warps * WR;
    static constexpr int raw_bytes = bn * QgType<DT>::slot_bytes;  // one stage
    static constexpr int x_bytes = BM * kXStride * 2;
    static constexpr int smem = STAGES * (raw_bytes + x_bytes);
};

// Grid: (M tiles, N tiles, K splits); split z covers stages [z * steps_per_split, ...) and writes its partial
// product to out + z * M * N (out is the workspace when there are several splits).
template <DType DT, int C>
__global__ void __launch_bounds__(QgShape<DT, C>::threads) quant_gemm_kernel(float* __restrict__ out, const __half* __restrict__ x,
                                                              const uint8_t* __restrict__ w, int M, int N, int K,
                                                              size_t row_bytes, int n_steps, int steps_per_split) {
    using T = QgType<DT>;
    using Sh = QgShape<DT, C>;
    constexpr int BM = Sh::BM, WR = Sh::WR, STAGES = Sh::STAGES, kThreads = Sh::threads;
    constexpr int kSlot16 = T::slot_bytes / 16;
    constexpr int kTilesN = WR / 16, kTilesM = BM / 8;
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t* raw = smem;                                                     // [STAGES][bn][slot]
    __half* xs = reinterpret_cast<__half*>(smem + STAGES * Sh::raw_bytes);  // [STAGES][BM][kXStride]

    const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
    const int m0 = int(blockIdx.x) * BM, n0 = int(blockIdx.y) * Sh::bn;
    const int s_begin = int(blockIdx.z) * steps_per_split;
    const int n_local = min(n_steps, s_begin + steps_per_split) - s_begin;

    auto load = [&](int s, int buf) {
        const int k0 = s * kStageK;
        const int bytes = min(kStageK, K - k0) / T::block_elems * T::block_bytes;
        const size_t col = size_t(k0 / T::block_elems) * T::block_bytes;
        uint8_t* rb = raw + buf * Sh::raw_bytes;
        for (int i = tid; i < Sh::bn * kSlot16; i += kThreads) {
            const int r = i / kSlot16, piece = i % kSlot16;
            if (n0 + r >= N) continue;  // rows past N are never stored
            const uintptr_t src = reinterpret_cast<uintptr_t>(w + size_t(n0 + r) * row_bytes + col);
            const uintptr_t base = src & ~uintptr_t(15);
            if (uintptr_t(16 * piece) < src + bytes - base)
                cp_async16(rb + r * T::slot_bytes + 16 * piece, reinterpret_cast<const void*>(base + 16 * piece),
                           true);
        }
        __half* xb = xs + buf * BM * kXStride;
        for (int i = tid; i < BM * (kStageK / 8); i += kThreads) {
            const int r = i / (kStageK / 8), c = i % (kStageK / 8);
            const int k = k0 + 8 * c;
            const bool valid = m0 + r < M && k < K;
            cp_async16(xb + r * kXStride + 8 * c, valid ? x + size_t(m0 + r) * K + k : x, valid);
        }
    };

    float acc[kTilesN][kTilesM][4];
#pragma unroll
    for (int i = 0; i < kTilesN; i++)
#pragma unroll
        for (int j = 0; j < kTilesM; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

#pragma unroll
    for (int i = 0; i < STAGES - 1; i++) {
        if (i < n_local) load(s_begin + i, i);
        cp_async_commit();
    }
    for (int it = 0; it < n_local; it++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        if (it + STAGES - 1 < n_local) load(s_begin + it + STAGES - 1, (it + STAGES - 1) % STAGES);
        cp_async_commit();

        const int buf = it % STAGES, k0 = (s_begin + it) * kStageK;
        const int n_chunks = min(kStageK, K - k0) / 32;
        const size_t col = size_t(k0 / T::block_elems) * T::block_bytes;
        const uint8_t* rp[kTilesN][2];  // this thread's weight rows (g and g + 8 of each m16 tile), stage start
#pragma unroll
        for (int i = 0; i < kTilesN; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = warp * WR + 16 * i + g + 8 * h;
                const uintptr_t src = reinterpret_cast<uintptr_t>(w + size_t(n0 + r) * row_bytes + col);
                rp[i][h] = raw + buf * Sh::raw_bytes + r * T::slot_bytes + (src & 15);
            }
        const __half* xb = xs + buf * BM * kXStride + g * kXStride + 8 * t;
#pragma unroll
        for (int c = 0; c < kStageK / 32; c++) {
            if (c >= n_chunks) break;
            uint32_t a[kTilesN][2][4];
#pragma unroll
            for (int i = 0; i < kTilesN; i++) {
                dq8<DT>(rp[i][0], 4 * c + t, a[i][0]);
                dq8<DT>(rp[i][1], 4 * c + t, a[i][1]);
            }
#pragma unroll
            for (int j = 0; j < kTilesM; j++) {
                const uint4 xv = *reinterpret_cast<const uint4*>(xb + 8 * j * kXStride + 32 * c);
#pragma unroll
                for (int i = 0; i < kTilesN; i++) {
                    const uint32_t f0[4] = {a[i][0][0], a[i][1][0], a[i][0][1], a[i][1][1]};
                    const uint32_t f1[4] = {a[i][0][2], a[i][1][2], a[i][0][3], a[i][1][3]};
                    mma16816(acc[i][j], f0, xv.x, xv.y);
                    mma16816(acc[i][j], f1, xv.z, xv.w);
                }
            }
        }
    }
    cp_async_wait<0>();

    float* o = out + size_t(blockIdx.z) * size_t(M) * size_t(N);
#pragma unroll
    for (int i = 0; i < kTilesN; i++)
#pragma unroll
        for (int j = 0; j < kTilesM; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int n = n0 + warp * WR + 16 * i + g + 8 * (e >> 1), m = m0 + 8 * j + 2 * t + (e & 1);
                if (n < N && m < M) o[size_t(m) * N + n] = acc[i][j][e];
            }
}

// out[i] = sum over s of part[s * n + i], in order of s.
__global__ void sum_splits_kernel(float* __restrict__ out, const float* __restrict__ part, int64_t n, int splits) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        float s = part[i];
        for (int z = 1; z < splits; z++) s += part[z * n + i];
        out[i] = s;
    }
}


int config_for(DType dt, int64_t M) {
    if (M <= 16) return 3;
    if (M <= 32) return 4;
    if (M <= 64) return dt == DType::Q6_K ? 6 : 5;
    return 7;
}

template <DType DT, int C>
void launch_config(const QuantGemmPlan& plan, float* out, const __half* xh, const uint8_t* w, int64_t M, int64_t N,
                   int64_t K, float* workspace, cudaStream_t stream) {
    constexpr QgConfig cfg = kConfigs[C];
    using Sh = QgShape<DT, C>;
    const auto kernel = quant_gemm_kernel<DT, C>;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Sh::smem);
    const int n_steps = int((K + kStageK - 1) / kStageK);
    const int per_split = (n_steps + plan.splits - 1) / plan.splits;
    const dim3 grid(unsigned((M + cfg.bm - 1) / cfg.bm), unsigned((N + Sh::bn - 1) / Sh::bn),
                    unsigned((n_steps + per_split - 1) / per_split));
    float* dst = plan.splits > 1 ? workspace : out;
    kernel<<<grid, Sh::threads, Sh::smem, stream>>>(dst, xh, w, int(M), int(N), int(K), dtype_row_bytes(DT, K), n_steps,
                                                 per_split);
    if (plan.splits > 1) sum_splits_kernel<<<grid_1d(M * N, 256), 256, 0, stream>>>(out, workspace, M * N, int(grid.z));
}

// f.template operator()<C>() for the configuration c < kNumConfigs.
template <int C = 0, typename F>
void with_config(int c, F&& f) {
    if constexpr (C < kNumConfigs) {
        if (c == C) f.template operator()<C>();
        else with_config<C + 1>(c, f);
    }
}

// Calls f.template operator()<DT>() for the dtypes the kernel handles.
template <typename F>
bool dispatch_quant(DType dt, F&& f) {
    switch (dt) {
        case DType::Q4_0: f.template operator()<DType::Q4_0>(); return true;
        case DType::Q4_1: f.template operator()<DType::Q4_1>(); return true;
        case DType::Q8_0: f.template operator()<DType::Q8_0>(); return true;
        case DType::Q4_K: f.template operator()<DType::Q4_K>(); return true;
        case DType::Q5_K: f.template operator()<DType::Q5_K>(); return true;
        case DType::Q6_K: f.template operator()<DType::Q6_K>(); return true;
        default: return false;
    }
}

int sm_count() {
    static const int n = [] {
        int dev = 0, v = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev);
        return v > 0 ? v : 1;
    }();
    return n;
}

}  // namespace

bool quant_gemm_supported(DType dt, int64_t K) {
    const bool type_ok = dispatch_quant(dt, []<DType>() {});  // the kernel's own list of types
    return type_ok && K > 0 && K % dtype_traits(dt).block_size == 0 && K <= (int64_t(1) << 30);
}

// OSPREY_QGEMM_CONFIG (0..2) and OSPREY_QGEMM_SPLITS (1..8) override the choices below (tuning only).
static int env_int(const char* name) {
    const char* e = std::getenv(name);
    return e != nullptr ? std::atoi(e) : -1;
}

QuantGemmPlan plan_quant_gemm(DType dt, int64_t M, int64_t N, int64_t K) {
    QuantGemmPlan p;
    p.config = config_for(dt, M);
    if (const int c = env_int("OSPREY_QGEMM_CONFIG"); c >= 0 && c < kNumConfigs) p.config = c;
    const QgConfig cfg = kConfigs[p.config];
    int smem = 0;
    dispatch_quant(dt, [&]<DType DT>() { with_config(p.config, [&]<int C>() { smem = QgShape<DT, C>::smem; }); });
    // Resident CTAs per SM (shared memory bound; 227 KB per SM, 1 KB reserved per CTA), then split K while the
    // grid fills less than that many CTAs per SM and each split keeps at least two stages.
    const int per_sm = std::max(1, std::min(8, (227 * 1024) / (smem + 1024)));
    const int64_t tiles = ((M + cfg.bm - 1) / cfg.bm) * ((N + cfg.warps * cfg.wr - 1) / (cfg.warps * cfg.wr));
    const int64_t want = int64_t(sm_count()) * per_sm;
    const int n_steps = int((K + kStageK - 1) / kStageK);
    int splits = 1;
    while (splits < 8 && tiles * splits < want && n_steps / (2 * splits) >= 2) splits *= 2;
    if (const int z = env_int("OSPREY_QGEMM_SPLITS"); z >= 1 && z <= 8) splits = std::min(z, n_steps);
    // The grid's real number of splits (whole stages per split).
    const int per_split = (n_steps + splits - 1) / splits;
    p.splits = (n_steps + per_split - 1) / per_split;
    p.workspace_bytes = p.splits > 1 ? size_t(p.splits) * size_t(M) * size_t(N) * sizeof(float) : 0;
    return p;
}

void launch_quant_gemm(const QuantGemmPlan& plan, float* out, const void* xh, DType dt, const void* w, int64_t M,
                       int64_t N, int64_t K, float* workspace, cudaStream_t stream) {
    const auto* x = static_cast<const __half*>(xh);
    const auto* wb = static_cast<const uint8_t*>(w);
    dispatch_quant(dt, [&]<DType DT>() {
        with_config(plan.config, [&]<int C>() { launch_config<DT, C>(plan, out, x, wb, M, N, K, workspace, stream); });
    });
}

}  // namespace osprey::backend::cuda
