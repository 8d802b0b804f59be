// The error table: every condition's HTTP status, OpenAI type/code and JSON body, written out by hand.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

using namespace osprey;
using namespace osprey::server;

TEST(ApiError, TableStatusTypeCode) {
    struct Row {
        ErrorKind kind;
        int status;
        std::string type;
        const char* code;
    };
    const Row rows[] = {
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
    for (const Row& r : rows) {
        const ErrorSpec& s = error_spec(r.kind);
        EXPECT_EQ(s.status, r.status);
        EXPECT_EQ(std::string(s.type), r.type);
        if (r.code) EXPECT_STREQ(s.code, r.code);
        else EXPECT_EQ(s.code, nullptr);
    }
}

TEST(ApiError, ErrorCodeMapping) {
    EXPECT_EQ(ApiError::from(Error(ErrorCode::InvalidArgument, "x")).status(), 400);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::ContextOverflow, "x")).status(), 400);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::ContextOverflow, "x")).kind(), ErrorKind::ContextOverflow);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::Unsupported, "x")).status(), 400);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::NotFound, "x")).status(), 404);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::OutOfMemory, "queue full")).status(), 429);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::InvalidFile, "x")).status(), 500);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::Io, "x")).status(), 500);
    EXPECT_EQ(ApiError::from(Error(ErrorCode::Internal, "x")).status(), 500);
}

TEST(ApiError, BodyJson) {
    EXPECT_EQ(ApiError(ErrorKind::InvalidField, "'n' must be an integer", "n").body(),
              R"({"error":{"code":null,"message":"'n' must be an integer","param":"n","type":"invalid_request_error"}})");
    EXPECT_EQ(ApiError(ErrorKind::QueueFull, "busy").body(),
              R"({"error":{"code":"rate_limit_exceeded","message":"busy","param":null,"type":"rate_limit_error"}})");
}

TEST(ApiError, Headers) {
    const auto h = ApiError(ErrorKind::QueueFull, "busy").headers();
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].first, "Retry-After");
    EXPECT_EQ(h[0].second, "1");
    EXPECT_TRUE(ApiError(ErrorKind::InvalidField, "x").headers().empty());
    EXPECT_EQ(ApiError(ErrorKind::Unauthorized, "x").headers().at(0).first, "WWW-Authenticate");
}
