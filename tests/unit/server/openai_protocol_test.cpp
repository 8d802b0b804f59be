// Request parsing/validation (every field's type and range errors name their param) and the response, chunk,
// logprobs and SSE formats, with expected JSON written by hand from the OpenAI API reference.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/api_error.h"
#include "server/openai_protocol.h"

using namespace osprey;
using namespace osprey::server;
using nlohmann::json;

namespace {

// Parses, expecting an ApiError; returns it.
ApiError parse_error(Endpoint e, const std::string& body) {
    try {
        parse_openai_request(e, body);
    } catch (const ApiError& err) {
        return err;
    }
    ADD_FAILURE() << "no error for " << body;
    return ApiError(ErrorKind::Internal, "none");
}

void expect_field_error(const std::string& body, const std::string& param, Endpoint e = Endpoint::Completions) {
    const ApiError err = parse_error(e, body);
    EXPECT_EQ(err.status(), 400) << body;
    EXPECT_EQ(err.param(), param) << body << " -> " << err.what();
}

const std::string kPrompt = R"("prompt": "hi")";

std::string with(const std::string& field) { return "{" + kPrompt + ", " + field + "}"; }
std::string chat_with(const std::string& field) {
    return R"({"messages": [{"role": "user", "content": "hi"}], )" + field + "}";
}

}  // namespace

TEST(Protocol, CompletionDefaults) {
    const OpenAiRequest r = parse_openai_request(Endpoint::Completions, R"({"model": "m", "prompt": "hello"})");
    EXPECT_EQ(r.model, "m");
    ASSERT_TRUE(r.prompt_text);
    EXPECT_EQ(*r.prompt_text, "hello");
    EXPECT_FALSE(r.stream);
    EXPECT_EQ(r.n, 1);
    EXPECT_FALSE(r.max_tokens_given);
    EXPECT_FLOAT_EQ(r.params.temperature, 1.0f);
    EXPECT_FLOAT_EQ(r.params.top_p, 1.0f);
    EXPECT_EQ(r.params.top_k, 0);
    EXPECT_EQ(r.params.n_logprobs, -1);
    EXPECT_FALSE(r.params.seed.has_value());
    EXPECT_TRUE(r.params.stop.empty());
}

TEST(Protocol, CompletionAllFields) {
    const OpenAiRequest r = parse_openai_request(Endpoint::Completions, R"({
        "model": "m", "prompt": [1, 2, 3], "stream": true, "stream_options": {"include_usage": true}, "n": 3,
        "stop": ["a", "bc"], "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
        "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1,
        "logprobs": 2, "echo": false, "ignore_eos": true, "user": "u", "stop_token_ids": [5]})");
    EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
    EXPECT_FALSE(r.prompt_text);
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.n, 3);
    EXPECT_EQ(r.params.stop, (std::vector<std::string>{"a", "bc"}));
    EXPECT_TRUE(r.max_tokens_given);
    EXPECT_EQ(r.params.max_tokens, 7);
    EXPECT_FLOAT_EQ(r.params.temperature, 0.5f);
    EXPECT_FLOAT_EQ(r.params.top_p, 0.9f);
    EXPECT_EQ(r.params.top_k, 40);
    EXPECT_FLOAT_EQ(r.params.min_p, 0.05f);
    EXPECT_EQ(r.params.seed, uint64_t(42));
    EXPECT_FLOAT_EQ(r.params.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(r.params.frequency_penalty, -0.5f);
    EXPECT_FLOAT_EQ(r.params.repetition_penalty, 1.1f);
    EXPECT_TRUE(r.logprobs);
    EXPECT_EQ(r.top_logprobs, 2);
    EXPECT_EQ(r.params.n_logprobs, 2);
    EXPECT_TRUE(r.params.ignore_eos);
    EXPECT_EQ(r.stop_token_ids, (std::vector<int32_t>{5}));
}

TEST(Protocol, PromptForms) {
    EXPECT_EQ(*parse_openai_request(Endpoint::Completions, R"({"prompt": ["one"]})").prompt_text, "one");
    EXPECT_EQ(parse_openai_request(Endpoint::Completions, R"({"prompt": [[4, 5]]})").prompt_tokens,
              (std::vector<int32_t>{4, 5}));
    EXPECT_EQ(parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "stop": "END"})").params.stop,
              (std::vector<std::string>{"END"}));
    EXPECT_EQ(parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "top_k": -1})").params.top_k, 0);
    // null means "not given"
    EXPECT_EQ(parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "n": null, "stop": null})").n, 1);
    EXPECT_EQ(parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "max_completion_tokens": 9})")
                  .params.max_tokens,
              9);
}

TEST(Protocol, MalformedJson) {
    EXPECT_EQ(parse_error(Endpoint::Completions, "{not json").kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(parse_error(Endpoint::Completions, "").kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(parse_error(Endpoint::Completions, "[1, 2]").kind(), ErrorKind::MalformedJson);
    EXPECT_EQ(parse_error(Endpoint::Completions, "{not json").status(), 400);
}

TEST(Protocol, FieldTypeErrors) {
    expect_field_error("{}", "prompt");
    expect_field_error(R"({"prompt": 5})", "prompt");
    expect_field_error(R"({"prompt": []})", "prompt");
    expect_field_error(R"({"prompt": [1, "a"]})", "prompt");
    expect_field_error(R"({"prompt": [-1]})", "prompt");
    expect_field_error(R"({"prompt": [{}]})", "prompt");
    expect_field_error(with(R"("model": 3)"), "model");
    expect_field_error(with(R"("stream": "yes")"), "stream");
    expect_field_error(with(R"("stream_options": {"include_usage": true})"), "stream_options");  // without stream
    expect_field_error(with(R"("stream": true, "stream_options": 1)"), "stream_options");
    expect_field_error(with(R"("stream": true, "stream_options": {"include_usage": 1})"),
                       "stream_options.include_usage");
    expect_field_error(with(R"("n": "2")"), "n");
    expect_field_error(with(R"("n": 0)"), "n");
    expect_field_error(with(R"("n": 17)"), "n");
    expect_field_error(with(R"("n": 1.5)"), "n");
    expect_field_error(with(R"("stop": 5)"), "stop");
    expect_field_error(with(R"("stop": ["a", 1])"), "stop");
    expect_field_error(with(R"("stop": ["a", "b", "c", "d", "e"])"), "stop");
    expect_field_error(with(R"("stop": "")"), "stop");
    expect_field_error(with(R"("max_tokens": "5")"), "max_tokens");
    expect_field_error(with(R"("max_tokens": 0)"), "max_tokens");
    expect_field_error(with(R"("max_tokens": -3)"), "max_tokens");
    expect_field_error(with(R"("max_completion_tokens": 0)"), "max_completion_tokens");
    expect_field_error(with(R"("temperature": "hot")"), "temperature");
    expect_field_error(with(R"("temperature": -0.1)"), "temperature");
    expect_field_error(with(R"("temperature": 2.5)"), "temperature");
    expect_field_error(with(R"("temperature": true)"), "temperature");
    expect_field_error(with(R"("top_p": 0)"), "top_p");
    expect_field_error(with(R"("top_p": 1.5)"), "top_p");
    expect_field_error(with(R"("top_k": 0.5)"), "top_k");
    expect_field_error(with(R"("top_k": -2)"), "top_k");
    expect_field_error(with(R"("min_p": 2)"), "min_p");
    expect_field_error(with(R"("seed": "x")"), "seed");
    expect_field_error(with(R"("seed": 1.5)"), "seed");
    expect_field_error(with(R"("presence_penalty": 3)"), "presence_penalty");
    expect_field_error(with(R"("frequency_penalty": -3)"), "frequency_penalty");
    expect_field_error(with(R"("repetition_penalty": 0)"), "repetition_penalty");
    expect_field_error(with(R"("logprobs": true)"), "logprobs");  // completions: an integer
    expect_field_error(with(R"("logprobs": 21)"), "logprobs");
    expect_field_error(with(R"("echo": 1)"), "echo");
    expect_field_error(with(R"("ignore_eos": "no")"), "ignore_eos");
    expect_field_error(with(R"("user": 5)"), "user");
    expect_field_error(with(R"("stop_token_ids": 5)"), "stop_token_ids");
}

TEST(Protocol, UnsupportedValues) {
    const ApiError echo = parse_error(Endpoint::Completions, with(R"("echo": true)"));
    EXPECT_EQ(echo.status(), 400);
    EXPECT_EQ(echo.kind(), ErrorKind::Unsupported);
    EXPECT_EQ(echo.param(), "echo");
    EXPECT_EQ(parse_error(Endpoint::Completions, R"({"prompt": ["a", "b"]})").kind(), ErrorKind::Unsupported);
    EXPECT_EQ(parse_error(Endpoint::Completions, with(R"("best_of": 3)")).param(), "best_of");
    EXPECT_EQ(parse_error(Endpoint::Completions, with(R"("suffix": "x")")).param(), "suffix");
    EXPECT_EQ(parse_error(Endpoint::Completions, with(R"("logit_bias": {"5": 1})")).param(), "logit_bias");
}

TEST(Protocol, ChatMessagesAndLogprobs) {
    const OpenAiRequest r = parse_openai_request(Endpoint::Chat, R"({"model": "m", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": null}],
        "logprobs": true, "top_logprobs": 3, "max_completion_tokens": 5})");
    ASSERT_EQ(r.messages.size(), 3u);
    EXPECT_EQ(r.messages[0]["role"], "system");
    EXPECT_EQ(r.messages[1]["content"], "ab");
    EXPECT_TRUE(r.logprobs);
    EXPECT_EQ(r.top_logprobs, 3);
    EXPECT_EQ(r.params.n_logprobs, 3);
    EXPECT_EQ(r.params.max_tokens, 5);
    EXPECT_EQ(parse_openai_request(Endpoint::Chat, chat_with(R"("logprobs": true)")).params.n_logprobs, 0);
    EXPECT_EQ(parse_openai_request(Endpoint::Chat, chat_with(R"("logprobs": false)")).params.n_logprobs, -1);
}

TEST(Protocol, ChatFieldErrors) {
    expect_field_error("{}", "messages", Endpoint::Chat);
    expect_field_error(R"({"messages": "hi"})", "messages", Endpoint::Chat);
    expect_field_error(R"({"messages": []})", "messages", Endpoint::Chat);
    expect_field_error(R"({"messages": [5]})", "messages[0]", Endpoint::Chat);
    expect_field_error(R"({"messages": [{"content": "x"}]})", "messages[0].role", Endpoint::Chat);
    expect_field_error(R"({"messages": [{"role": "king", "content": "x"}]})", "messages[0].role", Endpoint::Chat);
    expect_field_error(R"({"messages": [{"role": "user"}]})", "messages[0].content", Endpoint::Chat);
    expect_field_error(R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content", Endpoint::Chat);
    expect_field_error(chat_with(R"("logprobs": 2)"), "logprobs", Endpoint::Chat);
    expect_field_error(chat_with(R"("top_logprobs": 2)"), "top_logprobs", Endpoint::Chat);  // needs logprobs
    expect_field_error(chat_with(R"("logprobs": true, "top_logprobs": 21)"), "top_logprobs", Endpoint::Chat);
    EXPECT_EQ(parse_error(Endpoint::Chat,
                          R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})")
                  .kind(),
              ErrorKind::Unsupported);
}

namespace {

std::string fake_piece(int32_t id) {
    if (id == 1) return "Hel";
    if (id == 2) return "lo";
    if (id == 3) return "\xc3";  // half a character
    return "?";
}

std::vector<engine::SampledToken> two_tokens() {
    engine::SampledToken a;
    a.token = 1;
    a.logprob = -0.5f;
    a.top = {{1, -0.5f}, {2, -1.5f}};
    engine::SampledToken b;
    b.token = 2;
    b.logprob = -0.25f;
    b.top = {{2, -0.25f}, {1, -2.0f}};
    return {a, b};
}

}  // namespace

TEST(Protocol, CompletionLogprobsFormat) {
    const json j = completion_logprobs_json(two_tokens(), fake_piece, 0);
    EXPECT_EQ(j, json::parse(R"({"tokens": ["Hel", "lo"], "token_logprobs": [-0.5, -0.25],
        "top_logprobs": [{"Hel": -0.5, "lo": -1.5}, {"lo": -0.25, "Hel": -2.0}], "text_offset": [0, 3]})"));
    EXPECT_EQ(completion_logprobs_json(two_tokens(), fake_piece, 10)["text_offset"], json::parse("[10, 13]"));
}

TEST(Protocol, ChatLogprobsFormat) {
    const json j = chat_logprobs_json(two_tokens(), fake_piece);
    EXPECT_EQ(j, json::parse(R"({"content": [
        {"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108],
         "top_logprobs": [{"token": "Hel", "logprob": -0.5, "bytes": [72, 101, 108]},
                          {"token": "lo", "logprob": -1.5, "bytes": [108, 111]}]},
        {"token": "lo", "logprob": -0.25, "bytes": [108, 111],
         "top_logprobs": [{"token": "lo", "logprob": -0.25, "bytes": [108, 111]},
                          {"token": "Hel", "logprob": -2.0, "bytes": [72, 101, 108]}]}]})"));
    engine::SampledToken half;
    half.token = 3;
    EXPECT_EQ(chat_logprobs_json({half}, fake_piece)["content"][0]["bytes"], json::parse("[195]"));
    // Invalid UTF-8 in a token string is replaced when dumped, never throws.
    EXPECT_NO_THROW(dump_json(chat_logprobs_json({half}, fake_piece)));
}

TEST(Protocol, CompletionResponse) {
    const OpenAiRequest r = parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "n": 2})");
    ChoiceResult c0{0, "Hello", {1, 2}, {}, engine::FinishReason::Length, 2};
    ChoiceResult c1{1, "Hi", {1}, {}, engine::FinishReason::Stop, 1};
    const json j = completion_response(r, {"cmpl-1", 1700000000, "smol"}, {c0, c1}, Usage{5, 3}, fake_piece);
    EXPECT_EQ(j, json::parse(R"({"id": "cmpl-1", "object": "text_completion", "created": 1700000000,
        "model": "smol", "choices": [
            {"index": 0, "text": "Hello", "logprobs": null, "finish_reason": "length"},
            {"index": 1, "text": "Hi", "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})"));
}

TEST(Protocol, ChatResponse) {
    const OpenAiRequest r = parse_openai_request(Endpoint::Chat, chat_with(R"("logprobs": true)"));
    ChoiceResult c0{0, "Hello", {1, 2}, two_tokens(), engine::FinishReason::Stop, 2};
    const json j = completion_response(r, {"chatcmpl-1", 5, "smol"}, {c0}, Usage{4, 2}, fake_piece);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"], json::parse(R"({"role": "assistant", "content": "Hello"})"));
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    EXPECT_EQ(j["choices"][0]["logprobs"]["content"].size(), 2u);
    EXPECT_EQ(j["usage"], json::parse(R"({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6})"));
}

TEST(Protocol, StreamChunks) {
    const OpenAiRequest chat =
        parse_openai_request(Endpoint::Chat, chat_with(R"("stream": true, "stream_options": {"include_usage": true})"));
    const ResponseHeader h{"chatcmpl-9", 7, "smol"};
    EXPECT_EQ(stream_chunk(chat, h, 0, "", nullptr, engine::FinishReason::None, true),
              json::parse(R"({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 7, "model": "smol",
                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null,
                               "finish_reason": null}], "usage": null})"));
    EXPECT_EQ(stream_chunk(chat, h, 1, "Hi", nullptr, engine::FinishReason::None)["choices"][0]["delta"],
              json::parse(R"({"content": "Hi"})"));
    const json last = stream_chunk(chat, h, 0, "", nullptr, engine::FinishReason::Length);
    EXPECT_EQ(last["choices"][0]["delta"], json::object());
    EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(usage_chunk(chat, h, Usage{3, 4}),
              json::parse(R"({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 7, "model": "smol",
                  "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})"));

    const OpenAiRequest comp = parse_openai_request(Endpoint::Completions, R"({"prompt": "x", "stream": true})");
    EXPECT_EQ(stream_chunk(comp, {"cmpl-2", 8, "smol"}, 0, "ab", nullptr, engine::FinishReason::None),
              json::parse(R"({"id": "cmpl-2", "object": "text_completion", "created": 8, "model": "smol",
                  "choices": [{"index": 0, "text": "ab", "logprobs": null, "finish_reason": null}]})"));
}

TEST(Protocol, SseFraming) {
    EXPECT_EQ(sse_event(json::parse(R"({"a": 1})")), "data: {\"a\":1}\n\n");
    EXPECT_EQ(std::string(kSseDone), "data: [DONE]\n\n");
    EXPECT_EQ(sse_event(json("line\nbreak")), "data: \"line\\nbreak\"\n\n");  // never a raw newline inside an event
}

TEST(Protocol, FinishReasonText) {
    EXPECT_EQ(finish_reason_text(engine::FinishReason::None), nullptr);
    EXPECT_STREQ(finish_reason_text(engine::FinishReason::Stop), "stop");
    EXPECT_STREQ(finish_reason_text(engine::FinishReason::Length), "length");
    EXPECT_STREQ(finish_reason_text(engine::FinishReason::Abort), "abort");
}
