#include "kv/block_allocator.h"

#include "core/error.h"

namespace osprey::kv {

BlockAllocator::BlockAllocator(int n_blocks) : ref_counts_(size_t(n_blocks), 0) {
    free_ids_.reserve(size_t(n_blocks));
    // Hand out low ids first.
    for (int i = n_blocks - 1; i >= 0; i--) free_ids_.push_back(i);
}

bool BlockAllocator::allocate(int n, std::vector<int32_t>& out_ids) {
    if (n > n_free_blocks()) return false;
    for (int i = 0; i < n; i++) {
        const int32_t id = free_ids_.back();
        free_ids_.pop_back();
        OSP_CHECK(ref_counts_[size_t(id)] == 0, "block {} on the free list is referenced", id);
        ref_counts_[size_t(id)] = 1;
        out_ids.push_back(id);
    }
    return true;
}

void BlockAllocator::retain(int32_t id) {
    OSP_CHECK(id >= 0 && id < n_blocks() && ref_counts_[size_t(id)] > 0, "retain of free or invalid block {}", id);
    ref_counts_[size_t(id)]++;
}

void BlockAllocator::release(int32_t id) {
    OSP_CHECK(id >= 0 && id < n_blocks() && ref_counts_[size_t(id)] > 0, "release of free or invalid block {}", id);
    if (--ref_counts_[size_t(id)] == 0) free_ids_.push_back(id);
}

void BlockAllocator::check_invariants() const {
    std::vector<char> on_free_list(ref_counts_.size(), 0);
    for (int32_t id : free_ids_) {
        OSP_CHECK(id >= 0 && id < n_blocks(), "free list holds invalid id {}", id);
        OSP_CHECK(!on_free_list[size_t(id)], "block {} is on the free list twice", id);
        on_free_list[size_t(id)] = 1;
    }
    for (size_t i = 0; i < ref_counts_.size(); i++) {
        OSP_CHECK(ref_counts_[i] >= 0, "block {} has negative ref count", i);
        OSP_CHECK((ref_counts_[i] == 0) == bool(on_free_list[i]), "block {} ref count {} disagrees with free list", i,
                  ref_counts_[i]);
    }
}

}  // namespace osprey::kv
