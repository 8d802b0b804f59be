#include "model/step_input.h"

#include "core/error.h"

namespace osprey::model {

void StepInput::add_sequence(std::span<const int32_t> new_tokens, int n_cached, std::span<const int32_t> block_table,
                             int block_size, Logits logits) {
    const int n_new = int(new_tokens.size());
    const int n_total = n_cached + n_new;
    OSP_CHECK(n_new > 0 && int64_t(block_table.size()) * block_size >= n_total, "block table too short");
    const int first_row = n_tokens();
    for (int i = 0; i < n_new; i++) {
        const int pos = n_cached + i;
        tokens.push_back(new_tokens[size_t(i)]);
        positions.push_back(pos);
        slot_mapping.push_back(block_table[size_t(pos / block_size)] * block_size + pos % block_size);
    }
    query_start.push_back(n_tokens());
    seq_lens.push_back(n_total);
    block_tables.emplace_back(block_table.begin(), block_table.end());
    if (logits == Logits::Last) logit_rows.push_back(first_row + n_new - 1);
    if (logits == Logits::All)
        for (int i = 0; i < n_new; i++) logit_rows.push_back(first_row + i);
}

}  // namespace osprey::model
