// Generator: runs single requests to completion on a Model — prefill in chunks, then one decode step per token —
// over its own paged KV cache. The CLI's `run` and evaluation use it; the serving Engine batches many requests.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_set>
#include <vector>

#include "engine/sampler.h"
#include "kv/block_allocator.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"

namespace osprey::engine {

struct GenerationStats {
    int n_prompt = 0;
    int n_generated = 0;
    double prefill_seconds = 0;
    double decode_seconds = 0;   // from the first sampled token to the last
    const char* finish_reason = "length";  // "stop" (EOS) or "length"
};

class Generator {
  public:
    // kv_tokens: how many tokens the KV cache holds (the longest prompt + output this generator can run).
    Generator(model::Model& model, int kv_tokens, int block_size = 16, int prefill_chunk = 512,
              DType kv_dtype = DType::F32);

    // Streams each sampled token to on_token; returning false from it stops generation.
    // Throws Error(ContextOverflow) when the prompt plus max_tokens cannot fit, before any work.
    GenerationStats generate(std::span<const int32_t> prompt, const SamplingParams& params, uint64_t seed,
                             const std::unordered_set<int32_t>& eos_ids,
                             const std::function<bool(const SampledToken&)>& on_token);

    // Teacher-forced scoring: logits of every position of `tokens` (row i predicts token i + 1).
    // on_logits(first_row, logits [n, n_vocab]) is called chunk by chunk.
    void score(std::span<const int32_t> tokens, const std::function<void(int, const Tensor&)>& on_logits);

    int kv_tokens() const { return kv_cache_->n_blocks() * kv_cache_->block_size(); }

  private:
    // Makes sure the block table covers n_tokens; returns false if the pool is exhausted.
    bool grow_blocks(int n_tokens);
    void reset();

    model::Model& model_;
    std::unique_ptr<kv::PagedKvCache> kv_cache_;
    kv::BlockAllocator allocator_;
    std::vector<int32_t> block_table_;
    int prefill_chunk_;
    std::vector<float> host_logits_;
    backend::Buffer device_id_;   // the token drawn on the device
    backend::Buffer device_row_;  // its SamplingRow
};

}  // namespace osprey::engine
