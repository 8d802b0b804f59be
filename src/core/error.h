// Error: the one exception type Osprey throws for bad input and broken invariants.
// Input errors are raised where they are detected, with a message that says what, where and a hint.
// Boundaries (CLI, server) map ErrorCode to an exit code or an HTTP status in one table.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace osprey {

enum class ErrorCode {
    InvalidArgument,  // bad user input: flags, request fields, text
    InvalidFile,      // corrupt, truncated or inconsistent model/tokenizer file
    Unsupported,      // valid input that Osprey does not handle (tensor type, architecture)
    NotFound,         // missing file, tensor, model
    ContextOverflow,  // prompt (+ generation) longer than the context
    OutOfMemory,      // KV pool or device memory exhausted
    Io,               // read/write/mmap failure
    Internal,         // a broken invariant: a bug in Osprey
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
  public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const { return code_; }

  private:
    ErrorCode code_;
};

template <typename... Args>
[[noreturn]] void raise(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
    throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace osprey

// OSP_CHECK guards invariants only (never input): a failure is a bug and throws ErrorCode::Internal.
#define OSP_CHECK(cond, ...)                                                                                  \
    do {                                                                                                      \
        if (!(cond))                                                                                          \
            throw ::osprey::Error(::osprey::ErrorCode::Internal,                                              \
                                  ::fmt::format("{}:{}: check failed: {} {}", __FILE__, __LINE__, #cond,      \
                                                ::fmt::format("" __VA_ARGS__)));                              \
    } while (0)
