// --device: which backend runs the model. "auto" picks CUDA when a GPU is present, else the CPU.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/dtype.h"
#include "engine/engine.h"

namespace osprey::cli {

constexpr const char* kDeviceHelp = "auto, cpu, cuda or cuda:N (auto: cuda when a GPU is present)";

// Throws Error(InvalidArgument) for an unknown name and Error(Unsupported) for cuda in a build without CUDA.
std::unique_ptr<backend::Backend> make_backend(const std::string& device, int cpu_threads);

// --kv-cache-dtype: the KV cache element type. "auto" is f16 (half the memory and read traffic of f32; keys and
// values keep 11 significant bits); f32 keeps them exact.
constexpr const char* kKvCacheDtypeHelp = "KV cache type: auto (f16), f16 or f32";
DType parse_kv_cache_dtype(const std::string& name);

// --enforce-eager (vLLM's name): decode steps launch op by op instead of replaying captured CUDA graphs.
constexpr const char* kEnforceEagerHelp = "launch every op of a step eagerly (no CUDA graphs for decode steps)";

// --async-scheduling [auto|on|off]: launch step N+1 before reading step N's ids (engine::AsyncScheduling); the
// bare flag (vLLM's form) means on, and leaving it out means auto.
constexpr const char* kAsyncSchedulingHelp =
    "schedule and launch the next step while the device runs this one: auto (default: on for a GPU), on "
    "(also the bare flag) or off";
engine::AsyncScheduling parse_async_scheduling(const std::string& value, bool given);

}  // namespace osprey::cli
