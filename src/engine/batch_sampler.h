// BatchSampler: draws one step's tokens where the logits are. Temperature, top-k, top-p, min-p and the seed go to
// Backend::sample_rows; repetition/presence/frequency penalties are applied on the device from each row's history
// (Backend::apply_penalties, the distinct tokens and their counts built here); requested logprobs are taken from
// the raw logits on the device (Backend::row_logprobs, token_logprobs). Only the ids and the requested logprobs
// come back to the host. Each row draws the token the host Sampler would draw for it (same penalties, same
// sample_row, same counter).
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "engine/sampler.h"

namespace osprey::engine {

// One row of logits to draw from.
struct DrawRow {
    const Sampler* sampler = nullptr;
    const SamplingParams* params = nullptr;
    std::span<const int32_t> prompt;     // history for the penalties
    std::span<const int32_t> generated;  // tokens generated so far (the draw's counter is their number)
};

class BatchSampler {
  public:
    explicit BatchSampler(backend::Backend& be) : be_(be) {}

    // Launches the draw of rows that need neither penalties nor logprobs into ids (i32 [R] on the backend);
    // nothing waits for the device.
    void launch_plain(const Tensor& logits, std::span<const DrawRow> rows, const backend::Buffer& ids);

    // Draws every row (penalties and logprobs included) and waits for the results. logits [R, V] on the backend
    // is modified (penalties).
    std::vector<SampledToken> draw(const Tensor& logits, std::span<const DrawRow> rows);

  private:
    void upload_rows(std::span<const DrawRow> rows);
    // Row r's distinct history tokens with their counts among the generated ones, appended to entries_.
    void add_penalty_entries(const DrawRow& row);

    backend::Backend& be_;
    std::vector<backend::SamplingRow> host_rows_;
    backend::Buffer row_params_, ids_;
    // penalties
    std::vector<int32_t> entries_, row_start_;
    std::vector<float> penalty_params_;
    std::unordered_map<int32_t, int32_t> counts_;
    std::vector<int32_t> order_;
    backend::Buffer d_entries_, d_row_start_, d_penalty_params_;
    // logprobs
    backend::Buffer raw_logits_, lse_, top_ids_, top_logprobs_, chosen_logprobs_;
};

}  // namespace osprey::engine
