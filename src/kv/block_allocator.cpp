#include "kv/block_allocator.h"

#include "core/error.h"

namespace osprey::kv {

BlockHash block_hash(BlockHash parent, std::span<const int32_t> tokens) {
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    for (int32_t t : tokens) {
        uint32_t v = uint32_t(t);
        for (int i = 0; i < 4; i++) {
            h ^= (v & 0xff);
            h *= 0x100000001b3ull;
            v >>= 8;
        }
    }
    // splitmix64 finaliser: spreads FNV's weak low bits.
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

BlockAllocator::BlockAllocator(int n_blocks) : blocks_(size_t(n_blocks)) {
    for (int32_t i = 0; i < n_blocks; i++) push_back_free(i);
}

void BlockAllocator::unlink(int32_t id) {
    Block& b = blocks_[size_t(id)];
    if (b.prev >= 0) blocks_[size_t(b.prev)].next = b.next; else head_ = b.next;
    if (b.next >= 0) blocks_[size_t(b.next)].prev = b.prev; else tail_ = b.prev;
    b.prev = b.next = -1;
    n_free_--;
}

void BlockAllocator::push_back_free(int32_t id) {
    Block& b = blocks_[size_t(id)];
    b.prev = tail_;
    b.next = -1;
    if (tail_ >= 0) blocks_[size_t(tail_)].next = id; else head_ = id;
    tail_ = id;
    n_free_++;
}

void BlockAllocator::drop_hash(int32_t id) {
    Block& b = blocks_[size_t(id)];
    if (!b.has_hash) return;
    auto it = index_.find(b.hash);
    if (it != index_.end() && it->second == id) index_.erase(it);
    b.has_hash = false;
}

bool BlockAllocator::allocate(int n, std::vector<int32_t>& out_ids) {
    if (n > n_free_) return false;
    for (int i = 0; i < n; i++) {
        const int32_t id = head_;
        unlink(id);
        drop_hash(id);  // eviction of a cached free block
        blocks_[size_t(id)].ref_count = 1;
        out_ids.push_back(id);
    }
    return true;
}

void BlockAllocator::retain(int32_t id) {
    OSP_CHECK(id >= 0 && id < n_blocks() && blocks_[size_t(id)].ref_count > 0, "retain of free or invalid block {}", id);
    blocks_[size_t(id)].ref_count++;
}

void BlockAllocator::release(int32_t id) {
    OSP_CHECK(id >= 0 && id < n_blocks() && blocks_[size_t(id)].ref_count > 0, "release of free or invalid block {}", id);
    if (--blocks_[size_t(id)].ref_count == 0) push_back_free(id);
}

int32_t BlockAllocator::find_cached(BlockHash hash) const {
    auto it = index_.find(hash);
    return it == index_.end() ? -1 : it->second;
}

void BlockAllocator::acquire_cached(int32_t id) {
    OSP_CHECK(id >= 0 && id < n_blocks() && blocks_[size_t(id)].has_hash, "acquire of uncached block {}", id);
    Block& b = blocks_[size_t(id)];
    if (b.ref_count == 0) unlink(id);
    b.ref_count++;
}

void BlockAllocator::set_hash(int32_t id, BlockHash hash) {
    Block& b = blocks_[size_t(id)];
    OSP_CHECK(b.ref_count > 0, "hash set on free block {}", id);
    if (b.has_hash || index_.count(hash)) return;
    b.has_hash = true;
    b.hash = hash;
    index_.emplace(hash, id);
}

void BlockAllocator::clear_cache() {
    for (int32_t i = 0; i < n_blocks(); i++) blocks_[size_t(i)].has_hash = false;
    index_.clear();
}

void BlockAllocator::check_invariants() const {
    std::vector<char> on_free_list(blocks_.size(), 0);
    int n = 0;
    int32_t prev = -1;
    for (int32_t id = head_; id >= 0; id = blocks_[size_t(id)].next) {
        OSP_CHECK(id < n_blocks(), "free list holds invalid id {}", id);
        OSP_CHECK(!on_free_list[size_t(id)], "block {} is on the free list twice", id);
        OSP_CHECK(blocks_[size_t(id)].prev == prev, "free list back link broken at {}", id);
        on_free_list[size_t(id)] = 1;
        prev = id;
        n++;
        OSP_CHECK(n <= n_blocks(), "free list cycle");
    }
    OSP_CHECK(prev == tail_, "free list tail mismatch");
    OSP_CHECK(n == n_free_, "free count {} but {} on the list", n_free_, n);
    for (size_t i = 0; i < blocks_.size(); i++) {
        const Block& b = blocks_[i];
        OSP_CHECK(b.ref_count >= 0, "block {} has negative ref count", i);
        OSP_CHECK((b.ref_count == 0) == bool(on_free_list[i]), "block {} ref count {} disagrees with free list", i,
                  b.ref_count);
        if (b.has_hash) {
            auto it = index_.find(b.hash);
            OSP_CHECK(it != index_.end() && it->second == int32_t(i), "block {} hash not indexed", i);
        }
    }
    for (const auto& [hash, id] : index_)
        OSP_CHECK(blocks_[size_t(id)].has_hash && blocks_[size_t(id)].hash == hash, "index entry for block {} stale", id);
}

}  // namespace osprey::kv
