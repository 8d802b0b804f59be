// Paged grouped-query attention, causal, with optional sliding window and tanh soft-capping of the scores, for
// a ragged batch of sequences (decode, prefill and chunked prefill alike; see backend.h's AttentionBatch).
// One thread block per (query token, query head): its warps stride over the visible keys (read through the
// sequence's block table), each keeping an online softmax (running max, sum and weighted V in f32); the warps'
// states are merged at the end. The result depends only on the token's query and its context.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace osprey::backend::cuda {

constexpr int kAttentionMaxHeadDim = 256;

struct PagedAttentionArgs {
    float* out = nullptr;                 // [n_tokens, n_heads * head_dim]
    const float* q = nullptr;             // [n_tokens, n_heads * head_dim]
    const void* k_pool = nullptr;         // [n_blocks, block_size, n_kv_heads, head_dim] f32 or f16
    const void* v_pool = nullptr;
    bool kv_f16 = false;
    const int32_t* query_start = nullptr; // [n_seqs + 1]
    const int32_t* positions = nullptr;   // [n_tokens]
    const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
    int n_seqs = 0, n_tokens = 0, max_blocks_per_seq = 0, max_seq_len = 0, block_size = 16;
    int n_heads = 0, n_kv_heads = 0, head_dim = 0;
    float scale = 1.0f;
    int window = 0;       // key j visible to the query at p iff p - window < j <= p; 0 = no window
    float softcap = 0.0f; // 0 = none
};

void launch_paged_attention(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace osprey::backend::cuda
