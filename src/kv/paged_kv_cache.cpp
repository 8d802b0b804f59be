#include "kv/paged_kv_cache.h"

#include <cstring>

#include "core/error.h"

namespace osprey::kv {

size_t KvCacheShape::bytes_per_token() const {
    return 2 * size_t(n_layers) * size_t(n_kv_heads) * size_t(head_dim) * size_t(dtype_traits(dtype).block_bytes);
}

size_t KvCacheShape::bytes_per_block() const { return bytes_per_token() * size_t(block_size); }

int PagedKvCache::blocks_for_bytes(const KvCacheShape& shape, size_t n_bytes) {
    return int(n_bytes / shape.bytes_per_block());
}

PagedKvCache::PagedKvCache(backend::Backend& backend, const KvCacheShape& shape, int n_blocks)
    : shape_(shape), n_blocks_(n_blocks) {
    if (!backend.supports_kv_dtype(shape.dtype))
        raise(ErrorCode::Unsupported, "backend {} has no KV cache of type {}", backend.name(), dtype_name(shape.dtype));
    if (n_blocks <= 0) raise(ErrorCode::OutOfMemory, "the KV cache budget holds no block of {} tokens", shape.block_size);
    const size_t layer_bytes =
        size_t(n_blocks) * size_t(shape.block_size) * size_t(shape.n_kv_heads) * size_t(shape.head_dim) *
        size_t(dtype_traits(shape.dtype).block_bytes);
    for (int l = 0; l < shape.n_layers; l++) {
        k_.push_back(backend.alloc(layer_bytes));
        v_.push_back(backend.alloc(layer_bytes));
    }
}

void PagedKvCache::copy_block(backend::Backend& backend, int32_t src, int32_t dst) {
    const size_t block_bytes = shape_.bytes_per_block() / size_t(2 * shape_.n_layers);
    for (int l = 0; l < shape_.n_layers; l++) {
        for (const backend::Buffer* pool : {&k_[size_t(l)], &v_[size_t(l)]}) {
            char* base = static_cast<char*>(pool->data());
            backend.copy(base + size_t(dst) * block_bytes, base + size_t(src) * block_bytes, block_bytes);
        }
    }
}

backend::KvLayerView PagedKvCache::layer(int layer_idx) const {
    backend::KvLayerView view;
    const std::initializer_list<int64_t> dims = {n_blocks_, shape_.block_size, shape_.n_kv_heads, shape_.head_dim};
    view.k = k_[size_t(layer_idx)].view(shape_.dtype, dims);
    view.v = v_[size_t(layer_idx)].view(shape_.dtype, dims);
    view.block_size = shape_.block_size;
    return view;
}

}  // namespace osprey::kv
