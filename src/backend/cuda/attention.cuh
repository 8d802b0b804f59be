// Paged grouped-query attention, causal, with optional sliding window and tanh soft-capping of the scores, for
// a ragged batch of sequences (decode, prefill and chunked prefill alike; see backend.h's AttentionBatch).
// Two paths, chosen per sequence by its own number of query tokens (never by the rest of the batch):
// - one query token (decode): split-K. The visible keys of a token are cut into splits (a function of its number
//   of visible keys only: attention_common.cuh, DecodeSplitRule, ~256 keys per split, at most 32); each split
//   yields a partial (max, sum, weighted V) for all the query heads of a KV head, and the partials are merged in
//   split order. f16 pools run on tensor cores (attention_decode_mma.cu: q and the weights as f16 head + tail
//   pairs, so f32 accuracy; a block takes G consecutive splits of its sequence and merges them itself when it
//   holds all of them, so the merge kernel runs only for sequences whose splits span blocks), f32 pools on CUDA
//   cores (attention_decode.cu, one split per block, then the merge kernel). The result is bit-identical for every
//   G. OSPREY_CUDA_ATTN_DECODE=simt forces the CUDA-core kernel with its original 128-key splits (comparisons);
//   OSPREY_CUDA_ATTN_DECODE_SPLIT=<keys> sets the target split size and OSPREY_CUDA_ATTN_DECODE_GROUP=<n> the
//   splits per block (tuning; read once per process).
// - several query tokens (prefill, chunked prefill): tiled flash attention. A block per (sequence, tile of 64
//   query rows, KV head), a row being (query token, query head of the KV head); K and V tiles of 64 keys at
//   key indices aligned to multiples of 64 are staged in shared memory through the block table, with an online
//   softmax per row. Tiles a row cannot see leave its state exactly unchanged, so a row's result depends only on
//   its query, position and keys.
//   With an f16 pool (head_dim a multiple of 8) the products run on tensor cores (mma.sync, f16 inputs: q and the
//   softmax weights as f16 head + tail pairs, f32 accumulation and softmax; OSPREY_CUDA_ATTN_PREFILL=f16 rounds
//   them once instead); otherwise in f32 on CUDA cores.
// Decode math is all f32 (scores in the log2 domain, exp2f); the pools may be f32 or f16.
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
    const int32_t* query_start = nullptr; // [n_seqs + 1]; every sequence has at least one query token
    const int32_t* positions = nullptr;   // [n_tokens]
    const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
    int n_seqs = 0, n_tokens = 0, max_blocks_per_seq = 0, max_seq_len = 0, block_size = 16;
    int n_heads = 0, n_kv_heads = 0, head_dim = 0;
    float scale = 1.0f;
    int window = 0;       // key j visible to the query at p iff p - window < j <= p; 0 = no window
    float softcap = 0.0f; // 0 = none
};

// Launches the kernels on stream. The split-K partials live in a device scratch area owned by this file (one
// per device and stream, grown on demand; growing synchronizes the stream).
void launch_paged_attention(const PagedAttentionArgs& args, cudaStream_t stream);

}  // namespace osprey::backend::cuda
