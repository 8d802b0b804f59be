// BlockAllocator: host-side bookkeeping of the paged KV pool's blocks (ids, reference counts, free list).
//
// Contract: host-only, single-threaded (owned by the engine thread). A block is free iff its ref count is 0.
// allocate() takes blocks from the free list; retain()/release() adjust ref counts (shared prefixes, parallel
// sampling); a block returns to the free list when its count drops to 0. check_invariants() verifies the books.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace osprey::kv {

class BlockAllocator {
  public:
    explicit BlockAllocator(int n_blocks);

    int n_blocks() const { return int(ref_counts_.size()); }
    int n_free_blocks() const { return int(free_ids_.size()); }
    bool can_allocate(int n) const { return n <= n_free_blocks(); }

    // Takes n free blocks (ref count 1 each). Returns false and takes nothing when fewer are free.
    bool allocate(int n, std::vector<int32_t>& out_ids);
    void retain(int32_t block_id);
    void release(int32_t block_id);
    int ref_count(int32_t block_id) const { return ref_counts_[size_t(block_id)]; }

    // Throws Error(Internal) if the free list and ref counts disagree.
    void check_invariants() const;

  private:
    std::vector<int32_t> ref_counts_;  // [n_blocks]
    std::vector<int32_t> free_ids_;    // stack of free block ids
};

}  // namespace osprey::kv
