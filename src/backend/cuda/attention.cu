// Paged attention dispatch (see attention.cuh): the tiled prefill kernel for sequences with several query
// tokens, the split-K decode kernel (tensor cores for f16 pools, attention_decode_mma.cu; SIMT otherwise,
// attention_decode.cu) and its merge for sequences with one. Each kernel skips the other kind of
// sequence on the device, so the host needs only the batch's sizes.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "backend/cuda/attention_common.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/launch_util.cuh"

namespace osprey::backend::cuda {

namespace attn {

namespace {

// Grid (n_seqs, n_heads): out of a one-token sequence's head = its splits merged in split order.
__global__ void decode_merge_kernel(PagedAttentionArgs a, DecodePartials part) {
    pdl_release();  // the next product may start its weight loads
    const int s = blockIdx.x, h = blockIdx.y;
    const int t = a.query_start[s];
    if (a.query_start[s + 1] - t != 1) return;
    const int pos = a.positions[t], n_vis = pos - first_visible(pos, a.window) + 1;
    const int n_split = part.rule.n_splits(n_vis), hd = a.head_dim;
    if (n_split <= part.block_merged_splits) return;  // merged by the split kernel
    const int64_t base = (int64_t(s) * a.n_heads + h) * part.n_split_max;
    float w[kDecodeMaxSplits];
    const float inv = decode_split_weights(n_split, part.ml + base * 2, 2, w);
    float* out = a.out + (int64_t(t) * a.n_heads + h) * hd;
    for (int e = int(threadIdx.x); e < hd; e += int(blockDim.x))
        out[e] = decode_merge_column(n_split, w, inv, part.o + base * hd + e, hd);
}

// The split partials' area of one (device, stream); never freed (a process-lifetime cache).
float* decode_scratch(size_t n_floats, cudaStream_t stream) {
    static std::mutex mu;
    static auto* areas = new std::map<std::pair<int, cudaStream_t>, DeviceScratch>();
    int device = 0;
    cudaGetDevice(&device);
    const std::lock_guard<std::mutex> lock(mu);
    return static_cast<float*>((*areas)[{device, stream}].get(n_floats * sizeof(float), stream));
}

}  // namespace

void launch_decode_merge(const PagedAttentionArgs& a, const DecodePartials& part, cudaStream_t stream) {
    const dim3 grid(unsigned(a.n_seqs), unsigned(a.n_heads));
    decode_merge_kernel<<<grid, 128, 0, stream>>>(a, part);
}

}  // namespace attn

void launch_paged_attention(const PagedAttentionArgs& a, cudaStream_t stream) {
    if (a.n_tokens <= 0 || a.n_seqs <= 0 || a.n_heads <= 0) return;
    const size_t elem = a.kv_f16 ? 2 : 4;
    const bool vec_ok = (size_t(a.head_dim) * elem) % 16 == 0 && reinterpret_cast<uintptr_t>(a.k_pool) % 16 == 0 &&
                        reinterpret_cast<uintptr_t>(a.v_pool) % 16 == 0;
    // Every sequence has at least one query token, so some sequence has several iff n_tokens > n_seqs, and
    // some has exactly one unless the batch is a single sequence of several tokens.
    if (a.n_tokens > a.n_seqs) attn::launch_prefill_tiles(a, vec_ok, stream);
    if (a.n_seqs > 1 || a.n_tokens == 1) {
        // OSPREY_CUDA_ATTN_DECODE=simt: the SIMT kernel with its 128-key splits for every pool (comparisons);
        // otherwise the tensor-core kernel where it applies (f16 pools), else the SIMT kernel, both on 256-key
        // splits. OSPREY_CUDA_ATTN_DECODE_SPLIT=<keys> overrides the target split size (tuning only).
        static const bool simt = [] {
            const char* e = std::getenv("OSPREY_CUDA_ATTN_DECODE");
            return e != nullptr && std::string(e) == "simt";
        }();
        static const int split_target = [] {
            const char* e = std::getenv("OSPREY_CUDA_ATTN_DECODE_SPLIT");
            const int v = e != nullptr ? std::atoi(e) : 0;
            return v >= 64 ? v / 64 * 64 : 0;
        }();
        // OSPREY_CUDA_ATTN_DECODE_GROUP=<n>: splits per tensor-core block (tuning; results do not depend on it).
        static const int splits_per_block = [] {
            const char* e = std::getenv("OSPREY_CUDA_ATTN_DECODE_GROUP");
            return e != nullptr ? std::max(0, std::atoi(e)) : 0;
        }();
        attn::DecodePartials part;
        part.rule = simt ? attn::kDecodeRuleSimt : attn::kDecodeRuleMma;
        if (split_target > 0) part.rule.target = split_target;
        const int max_n = a.max_seq_len > 0 ? a.max_seq_len : 1;
        part.n_split_max = part.rule.n_splits_bound(max_n);
        const size_t rows = size_t(a.n_seqs) * size_t(a.n_heads) * size_t(part.n_split_max);
        float* area = attn::decode_scratch(rows * size_t(a.head_dim + 2), stream);
        part.o = area;
        part.ml = area + rows * size_t(a.head_dim);
        part.splits_per_block = splits_per_block;
        if (simt || !attn::launch_decode_mma(a, part, vec_ok, stream)) {
            part.block_merged_splits = 0;
            attn::launch_decode_splits(a, part, vec_ok, stream);
        }
        if (part.block_merged_splits < part.n_split_max) attn::launch_decode_merge(a, part, stream);
    }
}

}  // namespace osprey::backend::cuda
