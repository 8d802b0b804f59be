// PagedKvCache: the device storage of the paged KV pool, one K and one V pool per layer.
// Each pool is [n_blocks, block_size, n_kv_heads, head_dim] of kv_dtype. Block ids come from a BlockAllocator;
// a token at position p of a sequence lives in block block_table[p / block_size], slot p % block_size.
#pragma once

#include <vector>

#include "backend/backend.h"

namespace osprey::kv {

struct KvCacheShape {
    int n_layers = 0;
    int n_kv_heads = 0;
    int head_dim = 0;
    int block_size = 16;
    DType dtype = DType::F32;

    size_t bytes_per_block() const;   // all layers, K and V
    size_t bytes_per_token() const;   // all layers, K and V
};

class PagedKvCache {
  public:
    // Allocates n_blocks blocks on the backend. Throws Error(Unsupported) if the backend lacks the KV dtype.
    PagedKvCache(backend::Backend& backend, const KvCacheShape& shape, int n_blocks);

    const KvCacheShape& shape() const { return shape_; }
    int n_blocks() const { return n_blocks_; }
    int block_size() const { return shape_.block_size; }
    backend::KvLayerView layer(int layer_idx) const;
    // Copies block src's K and V (every layer) into block dst: copy-on-write of a shared partial block.
    void copy_block(backend::Backend& backend, int32_t src, int32_t dst);

    // How many blocks fit in a memory budget.
    static int blocks_for_bytes(const KvCacheShape& shape, size_t n_bytes);

  private:
    KvCacheShape shape_;
    int n_blocks_;
    std::vector<backend::Buffer> k_;  // [n_layers]
    std::vector<backend::Buffer> v_;  // [n_layers]
};

}  // namespace osprey::kv
