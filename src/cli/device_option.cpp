#include "cli/device_option.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#ifdef OSPREY_WITH_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace osprey::cli {

std::unique_ptr<backend::Backend> make_backend(const std::string& device, int cpu_threads) {
    if (device == "cpu") return backend::make_cpu_backend(cpu_threads);
    if (device == "auto") {
#ifdef OSPREY_WITH_CUDA
        if (backend::cuda_device_count() > 0) return backend::make_cuda_backend(0);
#endif
        return backend::make_cpu_backend(cpu_threads);
    }
    if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
        int index = 0;
        if (device.size() > 5) {
            try {
                index = std::stoi(device.substr(5));
            } catch (const std::exception&) {
                raise(ErrorCode::InvalidArgument, "--device {}: expected cuda:N", device);
            }
        }
#ifdef OSPREY_WITH_CUDA
        return backend::make_cuda_backend(index);
#else
        (void)index;
        raise(ErrorCode::Unsupported, "--device {}: this build has no CUDA backend (configure with -DOSPREY_CUDA=ON)",
              device);
#endif
    }
    raise(ErrorCode::InvalidArgument, "--device '{}': expected {}", device, kDeviceHelp);
}

DType parse_kv_cache_dtype(const std::string& name) {
    if (name == "auto" || name == "f16" || name == "fp16" || name == "float16") return DType::F16;
    if (name == "f32" || name == "fp32" || name == "float32") return DType::F32;
    raise(ErrorCode::InvalidArgument, "--kv-cache-dtype {}: expected auto, f16 or f32", name);
}

engine::AsyncScheduling parse_async_scheduling(const std::string& value, bool given) {
    if (value.empty()) return given ? engine::AsyncScheduling::On : engine::AsyncScheduling::Auto;
    if (value == "auto") return engine::AsyncScheduling::Auto;
    if (value == "on") return engine::AsyncScheduling::On;
    if (value == "off") return engine::AsyncScheduling::Off;
    raise(ErrorCode::InvalidArgument, "--async-scheduling {}: expected auto, on or off", value);
}

}  // namespace osprey::cli
