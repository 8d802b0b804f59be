// OpenAiService: the routes of `osprey serve` (/v1/completions, /v1/chat/completions, /v1/models, /health,
// /metrics) on top of a ServingEngine and the model's tokenizer. Transport-free: the HTTP session hands it a request
// and a ResponseSink, so tests can drive it with a fake sink and a fake engine.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/metrics.h"
#include "server/openai_protocol.h"
#include "server/serving_engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace osprey::server {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
    std::string method;         // "GET", "POST", ...
    std::string target;         // path (+ query)
    std::string authorization;  // the Authorization header, if any
    std::string body;
};

// The connection side of one HTTP request. All methods but post() run on the connection's executor.
class ResponseSink {
  public:
    virtual ~ResponseSink() = default;
    // Any thread: runs fn on the connection's executor (dropped if the connection is gone).
    virtual void post(std::function<void()> fn) = 0;
    // A complete response.
    virtual void reply(int status, const std::string& content_type, std::string body, const Headers& headers) = 0;
    // A 200 text/event-stream response, then write() chunks, then end_stream().
    virtual void begin_stream() = 0;
    virtual void write(std::string data) = 0;
    virtual void end_stream() = 0;
    // fn runs (on the executor) if the client goes away before the response is complete.
    virtual void on_disconnect(std::function<void()> fn) = 0;
};

struct ServiceConfig {
    std::string served_model_name;
    std::vector<std::string> model_aliases;  // also accepted as "model" (e.g. the -m path)
    std::string api_key;                     // empty: no auth
    ProtocolLimits limits;
};

class OpenAiService {
  public:
    // `engine` and `tokenizer` must outlive the service. Throws Error(InvalidFile) for a broken chat template.
    OpenAiService(ServingEngine& engine, const tokenizer::Tokenizer& tokenizer, ServiceConfig config);
    ~OpenAiService();

    void handle(const HttpRequest& request, const std::shared_ptr<ResponseSink>& sink);

    void set_draining() { draining_ = true; }
    bool draining() const { return draining_; }
    int n_active() const { return n_active_; }  // generations in flight
    Metrics& metrics() { return metrics_; }
    // An error response for failures detected by the transport (413, ...), counted and logged like the others.
    void reply_error(ResponseSink& sink, const class ApiError& error);

    // The prompt tokens of a request (chat template applied), as served. Throws ApiError.
    std::vector<int32_t> prompt_tokens(const OpenAiRequest& request) const;

  private:
    struct Generation;
    void handle_generation(Endpoint endpoint, const HttpRequest& request, const std::shared_ptr<ResponseSink>& sink);
    std::string next_id(Endpoint endpoint);

    ServingEngine& engine_;
    const tokenizer::Tokenizer& tokenizer_;
    ServiceConfig config_;
    std::optional<tokenizer::ChatTemplate> chat_template_;
    Metrics metrics_;
    std::atomic<bool> draining_{false};
    std::atomic<int> n_active_{0};
    std::atomic<uint64_t> id_counter_{0};
    uint64_t id_salt_ = 0;
    int64_t created_ = 0;  // start-up time (the /v1/models "created")
};

}  // namespace osprey::server
