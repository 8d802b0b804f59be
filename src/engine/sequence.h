// Sequence: one choice of one request as the scheduler sees it — its tokens (prompt + output), how many are in the
// KV cache, its block table and status. A request with n > 1 starts as one sequence that is forked into n after its
// prompt is prefilled; the forks share the prompt's blocks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "kv/block_allocator.h"

namespace osprey::engine {

enum class SeqStatus { Waiting, Running, Finished };

struct RequestState;  // shared by a request's sequences (engine.cpp)

struct Sequence {
    int64_t seq_id = 0;
    int64_t arrival = 0;          // admission order (FCFS key after priority)
    int priority = 0;
    SeqStatus status = SeqStatus::Waiting;
    std::vector<int32_t> tokens;  // prompt followed by output
    int n_prompt = 0;
    int n_computed = 0;           // tokens whose K/V are in the cache
    int n_cached_prompt = 0;      // prompt tokens served from the prefix cache (last admission)
    std::vector<int32_t> block_table;
    int n_hashed_blocks = 0;      // leading full blocks whose hash is registered
    kv::BlockHash last_hash = kv::kNoParentHash;  // hash of block n_hashed_blocks - 1
    int choice_index = 0;         // which of the request's n choices (after the fork)
    bool fork_pending = false;    // the prompt's parent: fork into n at its first sample
    int width = 1;                // running slots it stands for: n while fork_pending (counted against max_num_seqs)
    std::unique_ptr<Sampler> sampler;
    std::unique_ptr<TextStream> text;
    std::shared_ptr<RequestState> request;
    FinishReason finish_reason = FinishReason::None;
    int n_preemptions = 0;
    // Async scheduling: tokens[pending_index] is a placeholder for the id a launched step draws on the device, in
    // row pending_row of that step's id buffer (pending_index -1: none).
    int pending_index = -1;
    int pending_row = -1;
    // Static batching: finished (its request has its answer), but it keeps its row in the batch, computing tokens
    // nobody reads, until the batch's last sequence finishes, as a fixed-shape batch does.
    bool padding = false;

    int n_tokens() const { return int(tokens.size()); }
    int n_output() const { return n_tokens() - n_prompt; }
    int n_uncomputed() const { return n_tokens() - n_computed; }
};

}  // namespace osprey::engine
