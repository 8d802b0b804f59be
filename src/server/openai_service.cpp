#include "server/openai_service.h"

#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/api_error.h"

namespace osprey::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

bool authorized(const std::string& header, const std::string& key) {
    constexpr std::string_view prefix = "Bearer ";
    if (header.size() < prefix.size() || header.compare(0, prefix.size(), prefix) != 0) return false;
    return constant_time_equal(header.substr(prefix.size()), key);
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

const char* endpoint_name(Endpoint e) { return e == Endpoint::Completions ? "completions" : "chat"; }

}  // namespace

// One /v1/(chat/)completions request in flight. Lives as long as the engine's callback (or the sink) holds it;
// every method runs on the connection's executor.
struct OpenAiService::Generation : std::enable_shared_from_this<Generation> {
    OpenAiService* service = nullptr;
    std::weak_ptr<ResponseSink> weak_sink;  // set once: read from the engine thread to post
    std::shared_ptr<ResponseSink> sink;     // released when done
    OpenAiRequest request;
    ResponseHeader header;
    int n_prompt = 0;
    std::vector<ChoiceResult> choices;
    std::vector<size_t> text_offsets;
    int n_finished = 0;
    Clock::time_point start;
    std::optional<Clock::time_point> first_token;
    bool done = false;
    std::string error;

    std::string piece(int32_t id) const { return service->tokenizer_.token_to_piece(id); }

    void on_output(const engine::RequestOutput& o) {
        if (done || o.index < 0 || o.index >= int(choices.size())) return;
        ChoiceResult& c = choices[size_t(o.index)];
        if (c.finish_reason != engine::FinishReason::None) return;
        if (!o.token_ids.empty() && !first_token) first_token = Clock::now();
        c.text += o.text;
        c.token_ids.insert(c.token_ids.end(), o.token_ids.begin(), o.token_ids.end());
        if (request.logprobs) c.logprobs.insert(c.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
        const PieceFn piece_fn = [this](int32_t id) { return piece(id); };
        if (request.stream && sink && (!o.text.empty() || (request.logprobs && !o.logprobs.empty()))) {
            json lp = nullptr;
            if (request.logprobs) {
                if (request.endpoint == Endpoint::Completions) {
                    lp = completion_logprobs_json(o.logprobs, piece_fn, text_offsets[size_t(o.index)]);
                    for (const auto& t : o.logprobs) text_offsets[size_t(o.index)] += piece(t.token).size();
                } else {
                    lp = chat_logprobs_json(o.logprobs, piece_fn);
                }
            }
            sink->write(sse_event(stream_chunk(request, header, o.index, o.text, lp, engine::FinishReason::None)));
        }
        if (!o.finished) return;
        c.finish_reason = o.finish_reason == engine::FinishReason::None ? engine::FinishReason::Stop : o.finish_reason;
        c.n_completion_tokens = o.n_completion_tokens > 0 ? o.n_completion_tokens : int(c.token_ids.size());
        if (o.finish_reason == engine::FinishReason::Error && error.empty())
            error = o.error.empty() ? "generation failed" : o.error;
        if (request.stream && sink && error.empty())
            sink->write(sse_event(stream_chunk(request, header, o.index, "", nullptr, c.finish_reason)));
        if (++n_finished == int(choices.size())) complete();
    }

    Usage usage() const {
        Usage u;
        u.prompt_tokens = n_prompt;
        for (const ChoiceResult& c : choices) u.completion_tokens += c.n_completion_tokens;
        return u;
    }

    void complete() {
        done = true;
        int status = 200;
        const Usage u = usage();
        if (sink) {
            if (!error.empty()) {
                ApiError e(ErrorKind::Internal, error);
                if (request.stream) {
                    sink->write("data: " + e.body() + "\n\n");
                    sink->write(std::string(kSseDone));
                    sink->end_stream();
                } else {
                    status = e.status();
                    service->reply_error(*sink, e);
                }
            } else if (request.stream) {
                if (request.include_usage) sink->write(sse_event(usage_chunk(request, header, u)));
                sink->write(std::string(kSseDone));
                sink->end_stream();
            } else {
                const PieceFn piece_fn = [this](int32_t id) { return piece(id); };
                service->metrics_.count_response(200);
                sink->reply(200, "application/json",
                            dump_json(completion_response(request, header, choices, u, piece_fn)), {});
            }
        }
        finish_log(status, u);
    }

    // The client went away before the end: stop generating.
    void on_client_gone() {
        if (done) return;
        done = true;
        service->engine_.abort(header.id);
        if (!request.stream) service->metrics_.count_response(499);
        finish_log(499, usage());
    }

    void finish_log(int status, const Usage& u) {
        const Clock::time_point end = Clock::now();
        const double total = seconds(end - start);
        const double ttft = first_token ? seconds(*first_token - start) : total;
        int max_tokens = 0;
        std::string reasons;
        for (const ChoiceResult& c : choices) {
            max_tokens = std::max(max_tokens, c.n_completion_tokens);
            const char* r = finish_reason_text(c.finish_reason);
            if (!reasons.empty()) reasons += ',';
            reasons += r ? r : "abort";
        }
        if (status == 200 && first_token)
            service->metrics_.observe_request(ttft, max_tokens > 1 ? (total - ttft) / (max_tokens - 1) : 0.0, total,
                                              max_tokens > 1);
        spdlog::info("request id={} endpoint={} status={} stream={} n={} prompt_tokens={} output_tokens={} "
                     "ttft_s={:.4f} total_s={:.4f} finish={}",
                     header.id, endpoint_name(request.endpoint), status, request.stream, choices.size(),
                     u.prompt_tokens, u.completion_tokens, ttft, total, reasons);
        --service->n_active_;
        sink.reset();
    }
};

OpenAiService::OpenAiService(ServingEngine& engine, const tokenizer::Tokenizer& tokenizer, ServiceConfig config)
    : engine_(engine), tokenizer_(tokenizer), config_(std::move(config)) {
    if (!tokenizer_.chat_template().empty())
        chat_template_.emplace(tokenizer_.chat_template(), tokenizer_.bos_text(), tokenizer_.eos_text());
    id_salt_ = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
    created_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count();
}

OpenAiService::~OpenAiService() = default;

std::string OpenAiService::next_id(Endpoint endpoint) {
    const uint64_t c = id_counter_++;
    return fmt::format("{}{:016x}{:08x}", endpoint == Endpoint::Completions ? "cmpl-" : "chatcmpl-",
                       splitmix64(id_salt_ + c), uint32_t(c));
}

void OpenAiService::reply_error(ResponseSink& sink, const ApiError& error) {
    metrics_.count_response(error.status());
    if (error.status() >= 500) spdlog::warn("request error status={} message=\"{}\"", error.status(), error.what());
    else spdlog::info("request error status={} param={} message=\"{}\"", error.status(), error.param(), error.what());
    sink.reply(error.status(), "application/json", error.body(), error.headers());
}

std::vector<int32_t> OpenAiService::prompt_tokens(const OpenAiRequest& r) const {
    std::vector<int32_t> ids;
    const char* param = r.endpoint == Endpoint::Completions ? "prompt" : "messages";
    if (r.endpoint == Endpoint::Completions) {
        if (r.prompt_text) {
            ids = tokenizer_.encode(*r.prompt_text, /*add_special=*/true, /*parse_special=*/true);
        } else {
            for (int32_t id : r.prompt_tokens)
                if (id < 0 || id >= tokenizer_.n_vocab())
                    throw ApiError(ErrorKind::InvalidField,
                                   fmt::format("token id {} in 'prompt' is outside the vocabulary (0..{})", id,
                                               tokenizer_.n_vocab() - 1),
                                   "prompt");
            ids = r.prompt_tokens;
        }
    } else {
        if (!chat_template_)
            throw ApiError(ErrorKind::InvalidField,
                           "the model has no chat template; use /v1/completions with a plain prompt", "messages");
        std::string text;
        try {
            text = chat_template_->render(r.messages, /*add_generation_prompt=*/true);
        } catch (const Error& e) {
            throw ApiError::from(e, "messages");
        }
        ids = tokenizer_.encode(text, /*add_special=*/false, /*parse_special=*/true);
        if (tokenizer_.add_bos() && tokenizer_.bos_id() >= 0 && (ids.empty() || ids[0] != tokenizer_.bos_id()))
            ids.insert(ids.begin(), tokenizer_.bos_id());
    }
    if (ids.empty()) throw ApiError(ErrorKind::InvalidField, "the prompt is empty", param);
    return ids;
}

void OpenAiService::handle(const HttpRequest& request, const std::shared_ptr<ResponseSink>& sink) {
    std::string path = request.target.substr(0, request.target.find('?'));
    if (path.size() > 1 && path.back() == '/') path.pop_back();
    const bool is_api = path.rfind("/v1/", 0) == 0;
    if (is_api && !config_.api_key.empty() && !authorized(request.authorization, config_.api_key)) {
        reply_error(*sink, ApiError(ErrorKind::Unauthorized,
                                    "invalid or missing API key: send 'Authorization: Bearer <key>'"));
        return;
    }
    struct Route {
        const char* path;
        const char* method;
    };
    static constexpr Route routes[] = {{"/v1/completions", "POST"}, {"/v1/chat/completions", "POST"},
                                       {"/v1/models", "GET"},       {"/health", "GET"},
                                       {"/metrics", "GET"}};
    const bool model_path = path.rfind("/v1/models/", 0) == 0;
    const Route* route = nullptr;
    for (const Route& r : routes)
        if (path == r.path) route = &r;
    if (!route && !model_path) {
        reply_error(*sink, ApiError(ErrorKind::RouteNotFound, fmt::format("no route for {} {}", request.method, path)));
        return;
    }
    const char* method = route ? route->method : "GET";
    if (request.method != method) {
        ApiError e(ErrorKind::MethodNotAllowed,
                   fmt::format("{} does not allow {}; use {}", path, request.method, method));
        metrics_.count_response(e.status());
        Headers h = e.headers();
        h.emplace_back("Allow", method);
        sink->reply(e.status(), "application/json", e.body(), h);
        return;
    }
    if (path == "/v1/completions") return handle_generation(Endpoint::Completions, request, sink);
    if (path == "/v1/chat/completions") return handle_generation(Endpoint::Chat, request, sink);
    if (path == "/health") {
        if (draining_) return reply_error(*sink, ApiError(ErrorKind::Unavailable, "the server is shutting down"));
        if (!engine_.healthy()) return reply_error(*sink, ApiError(ErrorKind::Unavailable, "the engine is unhealthy"));
        metrics_.count_response(200);
        sink->reply(200, "application/json", "{\"status\":\"ok\"}", {});
        return;
    }
    if (path == "/metrics") {
        std::string text = metrics_.render(engine_.stats());  // this scrape is counted in the next one
        metrics_.count_response(200);
        sink->reply(200, "text/plain; version=0.0.4; charset=utf-8", std::move(text), {});
        return;
    }
    const json card = {{"id", config_.served_model_name},
                       {"object", "model"},
                       {"created", created_},
                       {"owned_by", "osprey"},
                       {"max_model_len", engine_.max_model_len()}};
    if (model_path) {
        const std::string name = path.substr(std::string_view("/v1/models/").size());
        if (name != config_.served_model_name)
            return reply_error(*sink, ApiError(ErrorKind::ModelNotFound,
                                               fmt::format("The model '{}' does not exist", name), "model"));
        metrics_.count_response(200);
        sink->reply(200, "application/json", dump_json(card), {});
        return;
    }
    metrics_.count_response(200);
    sink->reply(200, "application/json", dump_json(json{{"object", "list"}, {"data", json::array({card})}}), {});
}

void OpenAiService::handle_generation(Endpoint endpoint, const HttpRequest& http,
                                      const std::shared_ptr<ResponseSink>& sink) {
    const Clock::time_point start = Clock::now();
    try {
        if (draining_) throw ApiError(ErrorKind::Unavailable, "the server is shutting down");
        if (!engine_.healthy()) throw ApiError(ErrorKind::Unavailable, "the engine is unhealthy");
        ProtocolLimits limits = config_.limits;
        limits.max_n = engine_.max_n();
        OpenAiRequest r = parse_openai_request(endpoint, http.body, limits);
        if (!r.model.empty() && r.model != config_.served_model_name &&
            std::find(config_.model_aliases.begin(), config_.model_aliases.end(), r.model) ==
                config_.model_aliases.end())
            throw ApiError(ErrorKind::ModelNotFound,
                           fmt::format("The model '{}' does not exist (this server serves '{}')", r.model,
                                       config_.served_model_name),
                           "model");
        std::vector<int32_t> prompt = prompt_tokens(r);
        const int n_prompt = int(prompt.size());
        const int max_len = engine_.max_model_len();
        if (!r.max_tokens_given)
            r.params.max_tokens = endpoint == Endpoint::Completions ? 16 : std::max(1, max_len - n_prompt);
        if (int64_t(n_prompt) + r.params.max_tokens > max_len)
            throw ApiError(ErrorKind::ContextOverflow,
                           fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                                       "tokens ({} in the {}, {} in the completion). Please reduce the length of the "
                                       "{} or completion.",
                                       max_len, int64_t(n_prompt) + r.params.max_tokens, n_prompt,
                                       endpoint == Endpoint::Chat ? "messages" : "prompt", r.params.max_tokens,
                                       endpoint == Endpoint::Chat ? "messages" : "prompt"),
                           endpoint == Endpoint::Chat ? "messages" : "prompt");

        auto gen = std::make_shared<Generation>();
        gen->service = this;
        gen->weak_sink = sink;
        gen->sink = sink;
        gen->header = {next_id(endpoint),
                       std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count(),
                       r.model.empty() ? config_.served_model_name : r.model};
        gen->n_prompt = n_prompt;
        gen->choices.resize(size_t(r.n));
        for (int i = 0; i < r.n; ++i) gen->choices[size_t(i)].index = i;
        gen->text_offsets.assign(size_t(r.n), 0);
        gen->start = start;
        gen->request = r;

        engine::GenerationRequest g;
        g.request_id = gen->header.id;
        g.prompt = std::move(prompt);
        g.params = r.params;
        g.stop_token_ids = r.stop_token_ids;
        g.n = r.n;
        g.skip_special_tokens = r.skip_special_tokens;
        ++n_active_;
        try {
            std::weak_ptr<ResponseSink> weak = sink;
            engine_.submit(std::move(g), [gen, weak](const engine::RequestOutput& o) {
                if (auto s = weak.lock()) s->post([gen, o] { gen->on_output(o); });
            });
        } catch (...) {
            --n_active_;
            throw;
        }
        std::weak_ptr<Generation> weak_gen = gen;
        sink->on_disconnect([weak_gen] {
            if (auto g = weak_gen.lock()) g->on_client_gone();
        });
        if (r.stream) {
            metrics_.count_response(200);
            sink->begin_stream();
            if (endpoint == Endpoint::Chat)
                for (int i = 0; i < r.n; ++i)
                    sink->write(sse_event(
                        stream_chunk(r, gen->header, i, "", nullptr, engine::FinishReason::None, /*role_chunk=*/true)));
        }
    } catch (const ApiError& e) {
        reply_error(*sink, e);
    } catch (const Error& e) {
        reply_error(*sink, ApiError::from(e));
    } catch (const std::exception& e) {
        reply_error(*sink, ApiError(ErrorKind::Internal, e.what()));
    }
}

}  // namespace osprey::server
