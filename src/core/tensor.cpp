#include "core/tensor.h"

namespace osprey {

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (int i = 0; i < n_dims; i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace osprey
