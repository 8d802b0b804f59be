// BlockAllocator: host-side bookkeeping of the paged KV pool's blocks — ids, reference counts, an LRU free list and
// the prefix-cache index (a hash chain over full blocks' token ids).
//
// Contract: host-only, single-threaded (owned by the engine thread).
// - A block is in use iff its ref count is > 0. Blocks with count 0 sit on the free list in release order (LRU);
//   allocate() takes the least recently released one. A free block may still hold a cached hash: it stays findable
//   by find_cached() until allocate() hands it out again (eviction), so prefix blocks are reused across requests and
//   evicted LRU only when unreferenced.
// - The hash of a full block is block_hash(parent block's hash, its tokens); equal hashes mean equal content.
// - check_invariants() verifies the free list, ref counts and hash index agree.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace osprey::kv {

using BlockHash = uint64_t;

// Hash of a full block: a hash chain over the parent's hash and the block's token ids (FNV-1a then a 64-bit mix).
BlockHash block_hash(BlockHash parent, std::span<const int32_t> tokens);
constexpr BlockHash kNoParentHash = 0x9e3779b97f4a7c15ull;

class BlockAllocator {
  public:
    explicit BlockAllocator(int n_blocks);

    int n_blocks() const { return int(blocks_.size()); }
    int n_free_blocks() const { return n_free_; }
    int n_used_blocks() const { return n_blocks() - n_free_; }
    bool can_allocate(int n) const { return n <= n_free_; }

    // Takes n blocks from the head of the free list (ref count 1 each; a cached hash on them is evicted).
    // Returns false and takes nothing when fewer are free.
    bool allocate(int n, std::vector<int32_t>& out_ids);
    void retain(int32_t block_id);   // ref count + 1 (block must be in use)
    void release(int32_t block_id);  // ref count - 1; at 0 the block joins the tail of the free list
    int ref_count(int32_t block_id) const { return blocks_[size_t(block_id)].ref_count; }

    // ---- prefix cache ----
    // The block holding content `hash`, in use or free, or -1.
    int32_t find_cached(BlockHash hash) const;
    // Takes a reference to a cached block found with find_cached (revives it from the free list when its count is 0).
    void acquire_cached(int32_t block_id);
    // Records that block_id (in use, full) holds content `hash`. If another block already holds it, nothing changes
    // (the first one stays the cached copy).
    void set_hash(int32_t block_id, BlockHash hash);
    bool has_hash(int32_t block_id) const { return blocks_[size_t(block_id)].has_hash; }
    int n_cached_blocks() const { return int(index_.size()); }
    // Drops every cached hash (e.g. after weights change).
    void clear_cache();

    // Throws Error(Internal) if the books disagree.
    void check_invariants() const;

  private:
    struct Block {
        int32_t ref_count = 0;
        int32_t prev = -1, next = -1;  // free-list links (valid when ref_count == 0)
        bool has_hash = false;
        BlockHash hash = 0;
    };
    void unlink(int32_t id);
    void push_back_free(int32_t id);
    void drop_hash(int32_t id);

    std::vector<Block> blocks_;
    int32_t head_ = -1, tail_ = -1;  // free list, head = least recently released
    int n_free_ = 0;
    std::unordered_map<BlockHash, int32_t> index_;  // hash -> block holding it
};

}  // namespace osprey::kv
