// ApiError: an HTTP error response in the OpenAI format, and the ONE table that maps osprey::ErrorCode and the
// server's own conditions to HTTP status + {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace osprey::server {

// Every reason the server answers with an error; each has one row in the table (api_error.cpp).
enum class ErrorKind {
    MalformedJson,     // 400: body is not JSON / not an object
    InvalidField,      // 400: wrong type or range of a field (param names it)
    ContextOverflow,   // 400: prompt + max_tokens over the context
    Unsupported,       // 400: a valid field value Osprey does not implement (echo=true, ...)
    Unauthorized,      // 401: missing or wrong bearer key
    ModelNotFound,     // 404: unknown "model"
    RouteNotFound,     // 404: unknown path
    MethodNotAllowed,  // 405: known path, wrong method
    BodyTooLarge,      // 413: body over --max-body-bytes
    QueueFull,         // 429: the engine's admission queue is full (Retry-After)
    Internal,          // 500: a bug or a failed step
    Unavailable,       // 503: not ready, unhealthy or draining
};

struct ErrorSpec {
    ErrorKind kind;
    int status;
    const char* type;  // OpenAI "type"
    const char* code;  // OpenAI "code" (nullptr: null)
};

// The row for a kind.
const ErrorSpec& error_spec(ErrorKind kind);
// The kind an osprey::Error maps to (InvalidArgument -> InvalidField, OutOfMemory -> QueueFull, ...).
ErrorKind error_kind_for(ErrorCode code);

class ApiError : public std::runtime_error {
  public:
    ApiError(ErrorKind kind, std::string message, std::string param = {});
    // From an engine/tokenizer error, via error_kind_for().
    static ApiError from(const Error& error, std::string param = {});

    ErrorKind kind() const { return kind_; }
    int status() const { return error_spec(kind_).status; }
    const std::string& param() const { return param_; }
    // {"error": {"message", "type", "param", "code"}} (param/code null when empty).
    std::string body() const;
    // Extra response headers (Retry-After for 429, WWW-Authenticate for 401).
    std::vector<std::pair<std::string, std::string>> headers() const;

  private:
    ErrorKind kind_;
    std::string param_;
};

}  // namespace osprey::server
