#include "backend/backend.h"

#include <cstring>

#include "core/error.h"

namespace osprey::backend {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        release();
        owner_ = o.owner_;
        data_ = o.data_;
        n_bytes_ = o.n_bytes_;
        o.owner_ = nullptr;
        o.data_ = nullptr;
        o.n_bytes_ = 0;
    }
    return *this;
}

void Buffer::release() {
    if (owner_ && data_) owner_->free_raw(data_, n_bytes_);
    owner_ = nullptr;
    data_ = nullptr;
    n_bytes_ = 0;
}

Tensor Buffer::view(DType dtype, std::initializer_list<int64_t> shape) const {
    Tensor t(data_, dtype, shape, owner_ ? owner_->device() : Device::Cpu);
    OSP_CHECK(t.n_bytes() <= n_bytes_, "view {} of {} bytes exceeds buffer of {} bytes", t.shape_str(), t.n_bytes(),
              n_bytes_);
    return t;
}

void Backend::begin_capture() { raise(ErrorCode::Unsupported, "backend {} cannot record op graphs", name()); }

std::unique_ptr<OpGraph> Backend::end_capture() {
    raise(ErrorCode::Unsupported, "backend {} cannot record op graphs", name());
}

uint64_t Backend::begin_readback(const void* src, size_t n_bytes) {
    std::vector<uint8_t> bytes(n_bytes);
    copy_to_host(bytes.data(), src, n_bytes);
    readbacks_.push_back(std::move(bytes));
    return next_readback_++;
}

void Backend::finish_readback(uint64_t ticket, void* dst) {
    OSP_CHECK(!readbacks_.empty() && ticket + readbacks_.size() == next_readback_,
              "readback {} finished out of order", ticket);
    std::memcpy(dst, readbacks_.front().data(), readbacks_.front().size());
    readbacks_.pop_front();
}

void Backend::copy_indexed_i32(Tensor dst, const Tensor& dst_index, const Tensor& src, const Tensor& src_index) {
    const int64_t k = dst_index.numel();
    OSP_CHECK(src_index.numel() == k, "copy_indexed_i32: {} destinations for {} sources", k, src_index.numel());
    if (k == 0) return;
    std::vector<int32_t> d(static_cast<size_t>(dst.numel())), di(static_cast<size_t>(k));
    std::vector<int32_t> s(static_cast<size_t>(src.numel())), si(static_cast<size_t>(k));
    copy_to_host(d.data(), dst.data, d.size() * 4);
    copy_to_host(di.data(), dst_index.data, di.size() * 4);
    copy_to_host(s.data(), src.data, s.size() * 4);
    copy_to_host(si.data(), src_index.data, si.size() * 4);
    for (int64_t i = 0; i < k; i++) {
        OSP_CHECK(di[size_t(i)] >= 0 && di[size_t(i)] < int32_t(d.size()) && si[size_t(i)] >= 0 &&
                      si[size_t(i)] < int32_t(s.size()),
                  "copy_indexed_i32: index out of range");
        d[size_t(di[size_t(i)])] = s[size_t(si[size_t(i)])];
    }
    copy_from_host(dst.data, d.data(), d.size() * 4);
}

}  // namespace osprey::backend
