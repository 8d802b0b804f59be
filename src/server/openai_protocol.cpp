#include "server/openai_protocol.h"

#include <cmath>

#include <fmt/format.h>

#include "server/api_error.h"

namespace osprey::server {

using nlohmann::json;

namespace {

const char* type_name(const json& v) {
    if (v.is_boolean()) return "boolean";
    if (v.is_number_integer()) return "integer";
    if (v.is_number()) return "number";
    if (v.is_string()) return "string";
    if (v.is_array()) return "array";
    if (v.is_object()) return "object";
    return "null";
}

[[noreturn]] void bad_field(const std::string& param, const std::string& message) {
    throw ApiError(ErrorKind::InvalidField, message, param);
}

// A present, non-null field (null means "not given", as in the OpenAI API).
const json* field(const json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return nullptr;
    return &*it;
}

bool get_bool(const json& body, const char* name, bool fallback) {
    const json* v = field(body, name);
    if (!v) return fallback;
    if (!v->is_boolean()) bad_field(name, fmt::format("'{}' must be a boolean, got {}", name, type_name(*v)));
    return v->get<bool>();
}

int64_t to_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
    if (!v.is_number_integer())
        bad_field(name, fmt::format("'{}' must be an integer, got {}", name, type_name(v)));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
        bad_field(name, fmt::format("'{}' must be between {} and {}", name, lo, hi));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) bad_field(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
    return x;
}

std::optional<int64_t> get_int(const json& body, const char* name, int64_t lo, int64_t hi) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    return to_int(*v, name, lo, hi);
}

// A number in [lo, hi] (lo excluded when lo_open).
std::optional<float> get_float(const json& body, const char* name, double lo, double hi, bool lo_open = false) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    if (!v->is_number() || v->is_boolean())
        bad_field(name, fmt::format("'{}' must be a number, got {}", name, type_name(*v)));
    const double x = v->get<double>();
    if (!std::isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
        bad_field(name, fmt::format("'{}' must be {} {} and <= {}, got {}", name, lo_open ? ">" : ">=", lo, hi, x));
    return float(x);
}

std::vector<int32_t> token_array(const json& v, const std::string& name) {
    std::vector<int32_t> ids;
    ids.reserve(v.size());
    for (const json& t : v) {
        if (!t.is_number_integer()) bad_field(name, fmt::format("'{}' must hold only token ids (integers)", name));
        ids.push_back(int32_t(to_int(t, name, 0, INT32_MAX)));
    }
    return ids;
}

void parse_prompt(const json& body, OpenAiRequest& r) {
    const json* p = field(body, "prompt");
    if (!p) bad_field("prompt", "'prompt' is required");
    if (p->is_string()) {
        r.prompt_text = p->get<std::string>();
        return;
    }
    if (!p->is_array())
        bad_field("prompt", fmt::format("'prompt' must be a string or an array, got {}", type_name(*p)));
    if (p->empty()) bad_field("prompt", "'prompt' must not be empty");
    if ((*p)[0].is_number_integer()) {
        r.prompt_tokens = token_array(*p, "prompt");
        return;
    }
    if (p->size() > 1)
        throw ApiError(ErrorKind::Unsupported,
                       "batched prompts (a list of several prompts) are not supported; send one request per prompt",
                       "prompt");
    const json& one = (*p)[0];
    if (one.is_string()) {
        r.prompt_text = one.get<std::string>();
    } else if (one.is_array() && !one.empty()) {
        r.prompt_tokens = token_array(one, "prompt");
    } else {
        bad_field("prompt", "'prompt' must be a string, a list of token ids, or a list of one of those");
    }
}

void parse_messages(const json& body, OpenAiRequest& r) {
    const json* m = field(body, "messages");
    if (!m) bad_field("messages", "'messages' is required");
    if (!m->is_array()) bad_field("messages", fmt::format("'messages' must be an array, got {}", type_name(*m)));
    if (m->empty()) bad_field("messages", "'messages' must not be empty");
    r.messages = json::array();
    for (size_t i = 0; i < m->size(); ++i) {
        const json& msg = (*m)[i];
        const std::string param = fmt::format("messages[{}]", i);
        if (!msg.is_object()) bad_field(param, fmt::format("'{}' must be an object, got {}", param, type_name(msg)));
        const json* role = field(msg, "role");
        if (!role || !role->is_string()) bad_field(param + ".role", fmt::format("'{}.role' must be a string", param));
        std::string role_s = role->get<std::string>();
        if (role_s == "developer") role_s = "system";
        if (role_s != "system" && role_s != "user" && role_s != "assistant" && role_s != "tool")
            bad_field(param + ".role",
                      fmt::format("'{}.role' must be one of system, developer, user, assistant, tool; got '{}'", param,
                                  role_s));
        json out = msg;
        out["role"] = role_s;
        const json* content = field(msg, "content");
        if (!content) {
            if (role_s != "assistant") bad_field(param + ".content", fmt::format("'{}.content' is required", param));
        } else if (content->is_array()) {
            std::string text;
            for (const json& part : *content) {
                if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
                    bad_field(param + ".content", fmt::format("'{}.content' parts must be objects with a type", param));
                if (part["type"] != "text")
                    throw ApiError(ErrorKind::Unsupported,
                                   fmt::format("content part type '{}' is not supported (text only)",
                                               part["type"].get<std::string>()),
                                   param + ".content");
                if (!part.contains("text") || !part["text"].is_string())
                    bad_field(param + ".content", fmt::format("'{}.content' text parts need a string 'text'", param));
                text += part["text"].get<std::string>();
            }
            out["content"] = text;
        } else if (!content->is_string()) {
            bad_field(param + ".content",
                      fmt::format("'{}.content' must be a string or an array of parts, got {}", param,
                                  type_name(*content)));
        }
        r.messages.push_back(std::move(out));
    }
}

void parse_stop(const json& body, const ProtocolLimits& limits, OpenAiRequest& r) {
    const json* s = field(body, "stop");
    if (!s) return;
    std::vector<std::string> stops;
    if (s->is_string()) {
        stops.push_back(s->get<std::string>());
    } else if (s->is_array()) {
        if (int(s->size()) > limits.max_stop)
            bad_field("stop", fmt::format("'stop' holds at most {} strings, got {}", limits.max_stop, s->size()));
        for (const json& x : *s) {
            if (!x.is_string()) bad_field("stop", "'stop' must be a string or an array of strings");
            stops.push_back(x.get<std::string>());
        }
    } else {
        bad_field("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*s)));
    }
    for (const std::string& x : stops)
        if (x.empty()) bad_field("stop", "'stop' strings must not be empty");
    r.params.stop = std::move(stops);
}

}  // namespace

OpenAiRequest parse_openai_request(Endpoint endpoint, std::string_view text, const ProtocolLimits& limits) {
    json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) throw ApiError(ErrorKind::MalformedJson, "the request body is not valid JSON");
    if (!body.is_object())
        throw ApiError(ErrorKind::MalformedJson,
                       fmt::format("the request body must be a JSON object, got {}", type_name(body)));
    OpenAiRequest r;
    r.endpoint = endpoint;

    if (const json* m = field(body, "model")) {
        if (!m->is_string()) bad_field("model", fmt::format("'model' must be a string, got {}", type_name(*m)));
        r.model = m->get<std::string>();
    }
    if (endpoint == Endpoint::Completions) parse_prompt(body, r);
    else parse_messages(body, r);

    r.stream = get_bool(body, "stream", false);
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object())
            bad_field("stream_options", fmt::format("'stream_options' must be an object, got {}", type_name(*so)));
        if (!r.stream) bad_field("stream_options", "'stream_options' is only allowed when 'stream' is true");
        if (const json* iu = field(*so, "include_usage")) {
            if (!iu->is_boolean()) bad_field("stream_options.include_usage", "'include_usage' must be a boolean");
            r.include_usage = iu->get<bool>();
        }
    }
    r.n = int(get_int(body, "n", 1, limits.max_n).value_or(1));
    if (auto best_of = get_int(body, "best_of", 1, limits.max_n); best_of && *best_of != r.n)
        throw ApiError(ErrorKind::Unsupported, "'best_of' different from 'n' is not supported", "best_of");
    if (get_bool(body, "echo", false))
        throw ApiError(ErrorKind::Unsupported, "'echo' is not supported (only echo=false)", "echo");
    if (const json* s = field(body, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
        throw ApiError(ErrorKind::Unsupported, "'suffix' is not supported", "suffix");
    if (const json* lb = field(body, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
        throw ApiError(ErrorKind::Unsupported, "'logit_bias' is not supported", "logit_bias");
    if (const json* u = field(body, "user"); u && !u->is_string())
        bad_field("user", fmt::format("'user' must be a string, got {}", type_name(*u)));

    parse_stop(body, limits, r);
    auto max_tokens = get_int(body, "max_tokens", 1, INT32_MAX);
    auto max_completion = get_int(body, "max_completion_tokens", 1, INT32_MAX);
    if (max_completion) max_tokens = max_completion;
    if (max_tokens) {
        r.params.max_tokens = int(*max_tokens);
        r.max_tokens_given = true;
    }
    engine::SamplingParams& p = r.params;
    p.temperature = get_float(body, "temperature", 0.0, 2.0).value_or(1.0f);
    p.top_p = get_float(body, "top_p", 0.0, 1.0, /*lo_open=*/true).value_or(1.0f);
    p.min_p = get_float(body, "min_p", 0.0, 1.0).value_or(0.0f);
    p.presence_penalty = get_float(body, "presence_penalty", -2.0, 2.0).value_or(0.0f);
    p.frequency_penalty = get_float(body, "frequency_penalty", -2.0, 2.0).value_or(0.0f);
    p.repetition_penalty = get_float(body, "repetition_penalty", 0.0, 10.0, /*lo_open=*/true).value_or(1.0f);
    if (auto k = get_int(body, "top_k", -1, INT32_MAX)) p.top_k = *k < 0 ? 0 : int(*k);
    if (auto seed = get_int(body, "seed", INT64_MIN, INT64_MAX)) p.seed = uint64_t(*seed);
    p.ignore_eos = get_bool(body, "ignore_eos", false);
    r.skip_special_tokens = get_bool(body, "skip_special_tokens", true);
    if (const json* ids = field(body, "stop_token_ids")) {
        if (!ids->is_array()) bad_field("stop_token_ids", "'stop_token_ids' must be an array of token ids");
        r.stop_token_ids = token_array(*ids, "stop_token_ids");
    }

    if (endpoint == Endpoint::Completions) {
        if (auto lp = get_int(body, "logprobs", 0, limits.max_logprobs)) {
            r.logprobs = true;
            r.top_logprobs = int(*lp);
        }
    } else {
        r.logprobs = get_bool(body, "logprobs", false);
        if (auto top = get_int(body, "top_logprobs", 0, limits.max_logprobs)) {
            if (!r.logprobs) bad_field("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
            r.top_logprobs = int(*top);
        }
    }
    p.n_logprobs = r.logprobs ? r.top_logprobs : -1;
    return r;
}

const char* finish_reason_text(engine::FinishReason reason) {
    switch (reason) {
        case engine::FinishReason::None: return nullptr;
        case engine::FinishReason::Stop: return "stop";
        case engine::FinishReason::Length: return "length";
        case engine::FinishReason::Abort: return "abort";
        case engine::FinishReason::Error: return "error";
    }
    return nullptr;
}

namespace {

json finish_json(engine::FinishReason reason) {
    const char* s = finish_reason_text(reason);
    return s ? json(s) : json(nullptr);
}

json bytes_json(const std::string& piece) {
    json b = json::array();
    for (unsigned char c : piece) b.push_back(int(c));
    return b;
}

const char* object_name(const OpenAiRequest& r, bool chunk) {
    if (r.endpoint == Endpoint::Completions) return "text_completion";
    return chunk ? "chat.completion.chunk" : "chat.completion";
}

}  // namespace

json Usage::to_json() const {
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
}

json completion_logprobs_json(const std::vector<engine::SampledToken>& tokens, const PieceFn& piece,
                              size_t text_offset) {
    json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
    size_t offset = text_offset;
    for (const engine::SampledToken& t : tokens) {
        const std::string s = piece(t.token);
        toks.push_back(s);
        lps.push_back(t.logprob);
        json top = json::object();
        if (t.top.empty()) top[s] = t.logprob;
        for (const engine::TokenLogprob& alt : t.top) {
            const std::string a = piece(alt.token);
            if (!top.contains(a)) top[a] = alt.logprob;
        }
        tops.push_back(std::move(top));
        offs.push_back(offset);
        offset += s.size();
    }
    return {{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json chat_logprobs_json(const std::vector<engine::SampledToken>& tokens, const PieceFn& piece) {
    json content = json::array();
    for (const engine::SampledToken& t : tokens) {
        const std::string s = piece(t.token);
        json top = json::array();
        for (const engine::TokenLogprob& alt : t.top) {
            const std::string a = piece(alt.token);
            top.push_back({{"token", a}, {"logprob", alt.logprob}, {"bytes", bytes_json(a)}});
        }
        content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_json(s)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
}

json completion_response(const OpenAiRequest& request, const ResponseHeader& header,
                         const std::vector<ChoiceResult>& choices, const Usage& usage, const PieceFn& piece) {
    json cs = json::array();
    for (const ChoiceResult& c : choices) {
        json lp = nullptr;
        if (request.logprobs)
            lp = request.endpoint == Endpoint::Completions ? completion_logprobs_json(c.logprobs, piece, 0)
                                                           : chat_logprobs_json(c.logprobs, piece);
        json choice = {{"index", c.index}};
        if (request.endpoint == Endpoint::Completions) choice["text"] = c.text;
        else choice["message"] = {{"role", "assistant"}, {"content", c.text}};
        choice["logprobs"] = lp;
        choice["finish_reason"] = finish_json(c.finish_reason);
        cs.push_back(std::move(choice));
    }
    return {{"id", header.id},
            {"object", object_name(request, false)},
            {"created", header.created},
            {"model", header.model},
            {"choices", cs},
            {"usage", usage.to_json()}};
}

json stream_chunk(const OpenAiRequest& request, const ResponseHeader& header, int index, const std::string& text,
                  const json& logprobs, engine::FinishReason finish, bool role_chunk) {
    json choice = {{"index", index}};
    if (request.endpoint == Endpoint::Completions) {
        choice["text"] = text;
    } else {
        json delta = json::object();
        if (role_chunk) {
            delta["role"] = "assistant";
            delta["content"] = "";
        } else if (!text.empty() || finish == engine::FinishReason::None) {
            delta["content"] = text;
        }
        choice["delta"] = std::move(delta);
    }
    choice["logprobs"] = logprobs;
    choice["finish_reason"] = finish_json(finish);
    json chunk = {{"id", header.id},
                  {"object", object_name(request, true)},
                  {"created", header.created},
                  {"model", header.model},
                  {"choices", json::array({std::move(choice)})}};
    if (request.include_usage) chunk["usage"] = nullptr;
    return chunk;
}

json usage_chunk(const OpenAiRequest& request, const ResponseHeader& header, const Usage& usage) {
    return {{"id", header.id},
            {"object", object_name(request, true)},
            {"created", header.created},
            {"model", header.model},
            {"choices", json::array()},
            {"usage", usage.to_json()}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& j) { return "data: " + dump_json(j) + "\n\n"; }

}  // namespace osprey::server
