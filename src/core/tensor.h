// Tensor: a non-owning view of a contiguous row-major array on one device.
// shape is outermost-first: a weight matrix of n_out rows of n_in elements is {n_out, n_in}.
// Quantized tensors store each row as whole blocks; row_bytes() accounts for that.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace osprey {

enum class Device : uint8_t { Cpu, Cuda };

struct Tensor {
    void* data = nullptr;
    DType dtype = DType::F32;
    Device device = Device::Cpu;
    int n_dims = 0;
    std::array<int64_t, 4> shape{1, 1, 1, 1};

    Tensor() = default;
    Tensor(void* data_, DType dtype_, std::initializer_list<int64_t> dims, Device device_ = Device::Cpu)
        : data(data_), dtype(dtype_), device(device_), n_dims(int(dims.size())) {
        OSP_CHECK(dims.size() >= 1 && dims.size() <= 4);
        int i = 0;
        for (int64_t d : dims) shape[i++] = d;
    }

    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < n_dims; i++) n *= shape[i];
        return n;
    }
    int64_t cols() const { return n_dims > 0 ? shape[size_t(n_dims - 1)] : 0; }  // innermost dimension
    int64_t rows() const { return n_dims == 0 ? 0 : numel() / cols(); }
    size_t row_bytes() const { return dtype_row_bytes(dtype, cols()); }
    size_t n_bytes() const { return size_t(rows()) * row_bytes(); }

    template <typename T>
    T* as() const { return static_cast<T*>(data); }

    // Rows [first, first + n) of a tensor viewed as 2-D.
    Tensor row_slice(int64_t first, int64_t n) const {
        Tensor t = *this;
        t.n_dims = 2;
        t.shape = {n, cols(), 1, 1};
        t.data = static_cast<char*>(data) + size_t(first) * row_bytes();
        return t;
    }

    std::string shape_str() const;
};

}  // namespace osprey
