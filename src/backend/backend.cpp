#include "backend/backend.h"

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

}  // namespace osprey::backend
