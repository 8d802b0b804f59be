#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace osprey::server {

namespace {

// The one table: condition -> HTTP status, OpenAI error type and code.
constexpr ErrorSpec kErrorTable[] = {
    {ErrorKind::MalformedJson, 400, "invalid_request_error", nullptr},
    {ErrorKind::InvalidField, 400, "invalid_request_error", nullptr},
    {ErrorKind::ContextOverflow, 400, "invalid_request_error", "context_length_exceeded"},
    {ErrorKind::Unsupported, 400, "invalid_request_error", "unsupported_parameter"},
    {ErrorKind::Unauthorized, 401, "invalid_request_error", "invalid_api_key"},
    {ErrorKind::ModelNotFound, 404, "invalid_request_error", "model_not_found"},
    {ErrorKind::RouteNotFound, 404, "invalid_request_error", "not_found"},
    {ErrorKind::MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"},
    {ErrorKind::BodyTooLarge, 413, "invalid_request_error", "request_too_large"},
    {ErrorKind::QueueFull, 429, "rate_limit_error", "rate_limit_exceeded"},
    {ErrorKind::Internal, 500, "server_error", nullptr},
    {ErrorKind::Unavailable, 503, "server_error", "service_unavailable"},
};

}  // namespace

const ErrorSpec& error_spec(ErrorKind kind) {
    for (const ErrorSpec& s : kErrorTable)
        if (s.kind == kind) return s;
    return kErrorTable[10];  // Internal
}

ErrorKind error_kind_for(ErrorCode code) {
    switch (code) {
        case ErrorCode::InvalidArgument: return ErrorKind::InvalidField;
        case ErrorCode::ContextOverflow: return ErrorKind::ContextOverflow;
        case ErrorCode::Unsupported: return ErrorKind::Unsupported;
        case ErrorCode::NotFound: return ErrorKind::ModelNotFound;
        case ErrorCode::OutOfMemory: return ErrorKind::QueueFull;
        case ErrorCode::InvalidFile:
        case ErrorCode::Io:
        case ErrorCode::Internal: return ErrorKind::Internal;
    }
    return ErrorKind::Internal;
}

ApiError::ApiError(ErrorKind kind, std::string message, std::string param)
    : std::runtime_error(std::move(message)), kind_(kind), param_(std::move(param)) {}

ApiError ApiError::from(const Error& error, std::string param) {
    return ApiError(error_kind_for(error.code()), error.what(), std::move(param));
}

std::string ApiError::body() const {
    const ErrorSpec& spec = error_spec(kind_);
    nlohmann::json e = {
        {"message", what()},
        {"type", spec.type},
        {"param", param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_)},
        {"code", spec.code ? nlohmann::json(spec.code) : nlohmann::json(nullptr)},
    };
    return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::pair<std::string, std::string>> ApiError::headers() const {
    if (kind_ == ErrorKind::QueueFull) return {{"Retry-After", "1"}};
    if (kind_ == ErrorKind::Unauthorized) return {{"WWW-Authenticate", "Bearer"}};
    return {};
}

}  // namespace osprey::server
