#include "backend/cpu/cpu_backend.h"

#include "core/error.h"

namespace osprey::backend {

std::unique_ptr<Backend> make_cpu_backend(int) { raise(ErrorCode::Unsupported, "CPU backend not implemented yet"); }

}  // namespace osprey::backend
