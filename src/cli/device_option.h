// --device: which backend runs the model. "auto" picks CUDA when a GPU is present, else the CPU.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace osprey::cli {

constexpr const char* kDeviceHelp = "auto, cpu, cuda or cuda:N (auto: cuda when a GPU is present)";

// Throws Error(InvalidArgument) for an unknown name and Error(Unsupported) for cuda in a build without CUDA.
std::unique_ptr<backend::Backend> make_backend(const std::string& device, int cpu_threads);

}  // namespace osprey::cli
