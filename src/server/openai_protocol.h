// The OpenAI wire format for /v1/completions and /v1/chat/completions: request parsing and validation (every
// field error is an ApiError naming `param`), and the JSON of responses, stream chunks and logprobs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace osprey::server {

enum class Endpoint { Completions, Chat };

struct OpenAiRequest {
    Endpoint endpoint = Endpoint::Completions;
    std::string model;                   // empty: not given
    bool stream = false;
    bool include_usage = false;          // stream_options.include_usage
    int n = 1;
    std::optional<std::string> prompt_text;  // completions: a string prompt
    std::vector<int32_t> prompt_tokens;      // completions: a token-id prompt
    nlohmann::json messages;                 // chat: [{role, content: string}] (content parts flattened)
    engine::SamplingParams params;           // params.max_tokens valid only when max_tokens_given
    bool max_tokens_given = false;
    bool logprobs = false;                   // completions: logprobs given; chat: logprobs=true
    int top_logprobs = 0;                    // alternatives per token
    std::vector<int32_t> stop_token_ids;     // vLLM extension
    bool skip_special_tokens = true;         // vLLM extension
};

// Limits the parser enforces (beyond the engine's own checks).
struct ProtocolLimits {
    int max_n = 16;
    int max_logprobs = 20;
    int max_stop = 4;
};

// Throws ApiError (MalformedJson, InvalidField with param, Unsupported).
OpenAiRequest parse_openai_request(Endpoint endpoint, std::string_view body, const ProtocolLimits& limits = {});

const char* finish_reason_text(engine::FinishReason reason);  // "stop", "length", "abort", "error"; None -> null

// One choice's accumulated result.
struct ChoiceResult {
    int index = 0;
    std::string text;
    std::vector<int32_t> token_ids;
    std::vector<engine::SampledToken> logprobs;
    engine::FinishReason finish_reason = engine::FinishReason::None;
    int n_completion_tokens = 0;
};

struct Usage {
    int prompt_tokens = 0;
    int completion_tokens = 0;
    nlohmann::json to_json() const;
};

// The bytes a token id stands for (Tokenizer::token_to_piece in the server; a fake in tests).
using PieceFn = std::function<std::string(int32_t)>;

// Logprobs of a run of tokens. Completions: {tokens, token_logprobs, top_logprobs, text_offset} with offsets
// starting at `text_offset`; chat: {content: [{token, logprob, bytes, top_logprobs}]}.
nlohmann::json completion_logprobs_json(const std::vector<engine::SampledToken>& tokens, const PieceFn& piece,
                                        size_t text_offset);
nlohmann::json chat_logprobs_json(const std::vector<engine::SampledToken>& tokens, const PieceFn& piece);

struct ResponseHeader {
    std::string id;     // "cmpl-..." / "chatcmpl-..."
    int64_t created = 0;
    std::string model;
};

// A whole non-streamed response.
nlohmann::json completion_response(const OpenAiRequest& request, const ResponseHeader& header,
                                   const std::vector<ChoiceResult>& choices, const Usage& usage, const PieceFn& piece);

// A stream chunk for one choice: text (may be empty), logprobs of its tokens (null when not requested),
// finish reason (None: null). `role_chunk`: the chat stream's first chunk {role: "assistant", content: ""}.
nlohmann::json stream_chunk(const OpenAiRequest& request, const ResponseHeader& header, int index,
                            const std::string& text, const nlohmann::json& logprobs, engine::FinishReason finish,
                            bool role_chunk = false);
// The final usage chunk (choices: []) of a stream with include_usage.
nlohmann::json usage_chunk(const OpenAiRequest& request, const ResponseHeader& header, const Usage& usage);

// JSON text that never throws on invalid UTF-8 (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);
// Server-Sent Events framing.
std::string sse_event(const nlohmann::json& j);  // "data: {json}\n\n"
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

}  // namespace osprey::server
