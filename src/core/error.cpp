#include "core/error.h"

namespace osprey {

const char* error_code_name(ErrorCode code) {
    switch (code) {
        case ErrorCode::InvalidArgument: return "invalid_argument";
        case ErrorCode::InvalidFile: return "invalid_file";
        case ErrorCode::Unsupported: return "unsupported";
        case ErrorCode::NotFound: return "not_found";
        case ErrorCode::ContextOverflow: return "context_overflow";
        case ErrorCode::OutOfMemory: return "out_of_memory";
        case ErrorCode::Io: return "io_error";
        case ErrorCode::Internal: return "internal_error";
    }
    return "unknown";
}

}  // namespace osprey
