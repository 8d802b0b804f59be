// StepInput: one forward step's ragged token batch, on the host. Built by the engine (or tests), turned into an
// AttentionBatch on the device by Model::forward.
//
// Sequence s contributes tokens [query_start[s], query_start[s+1]): a whole prompt, a chunk of one, or one decode
// token. Their positions continue the sequence's n_cached tokens already in the KV cache; seq_lens[s] counts both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace osprey::model {

struct StepInput {
    std::vector<int32_t> tokens;        // [n_tokens]
    std::vector<int32_t> positions;     // [n_tokens]
    std::vector<int32_t> slot_mapping;  // [n_tokens]: block_id * block_size + offset
    std::vector<int32_t> query_start;   // [n_seqs + 1]
    std::vector<int32_t> seq_lens;      // [n_seqs]
    std::vector<std::vector<int32_t>> block_tables;  // [n_seqs][n_blocks of that sequence]
    std::vector<int32_t> logit_rows;    // token rows whose logits are computed, in output order
    // Tokens not known on the host yet (drawn by the previous step on the device): tokens[device_token_pos[k]] is
    // a placeholder, replaced on the device by device_tokens[device_token_row[k]] (i32 ids on the model's backend).
    std::vector<int32_t> device_token_pos;
    std::vector<int32_t> device_token_row;
    Tensor device_tokens;

    StepInput() { query_start.push_back(0); }

    int n_tokens() const { return int(tokens.size()); }
    int n_seqs() const { return int(seq_lens.size()); }

    // Appends a sequence: new_tokens follow n_cached tokens already cached. block_table must cover
    // n_cached + new_tokens.size() tokens. logits: none, the last new token's, or every new token's.
    enum class Logits { None, Last, All };
    void add_sequence(std::span<const int32_t> new_tokens, int n_cached, std::span<const int32_t> block_table,
                      int block_size, Logits logits);
};

}  // namespace osprey::model
