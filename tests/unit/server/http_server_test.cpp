// The HTTP layer end to end over loopback sockets, with a fake engine (scripted token events) and a real
// tokenizer (shared Qwen3 tokenizer.json with its ChatML template): routing, status codes, SSE framing,
// keep-alive, body limit, queue-full, disconnect -> abort.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include <boost/asio.hpp>  // after <utility> (Boost 1.74 awaitable.hpp needs std::exchange)
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "server/http_server.h"
#include "server/openai_service.h"

using namespace osprey;
using namespace osprey::server;
using nlohmann::json;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// Emits max_tokens events per choice: token 10+k with text "<k>" (k = 0..), then a finished Length event.
class FakeEngine final : public ServingEngine {
  public:
    ~FakeEngine() override {
        for (auto& t : threads_) t.join();
    }
    void submit(engine::GenerationRequest req, engine::OutputCallback cb) override {
        std::lock_guard<std::mutex> lock(mu_);
        if (queue_full) throw osprey::Error(osprey::ErrorCode::OutOfMemory, "the admission queue is full");
        last_request = req;
        if (hold) {
            held_[req.request_id] = {req, std::move(cb)};
            return;
        }
        const bool fail = fail_generation;
        threads_.emplace_back([req, cb, fail] {
            if (fail) {
                engine::RequestOutput f;
                f.request_id = req.request_id;
                f.finished = true;
                f.finish_reason = engine::FinishReason::Error;
                f.error = "step failed: injected";
                cb(f);
                return;
            }
            for (int i = 0; i < req.n; ++i) {
                for (int k = 0; k < req.params.max_tokens; ++k) {
                    engine::RequestOutput o;
                    o.request_id = req.request_id;
                    o.index = i;
                    o.token_ids = {10 + k};
                    o.text = "<" + std::to_string(k) + ">";
                    if (req.params.n_logprobs >= 0) o.logprobs = {engine::SampledToken{10 + k, -0.5f, {}}};
                    cb(o);
                }
                engine::RequestOutput f;
                f.request_id = req.request_id;
                f.index = i;
                f.finished = true;
                f.finish_reason = engine::FinishReason::Length;
                f.n_prompt_tokens = int(req.prompt.size());
                f.n_completion_tokens = req.params.max_tokens;
                cb(f);
            }
        });
    }
    void abort(const std::string& id) override {
        std::lock_guard<std::mutex> lock(mu_);
        aborted.push_back(id);
        held_.erase(id);
    }
    engine::EngineStats stats() const override {
        std::lock_guard<std::mutex> lock(mu_);
        engine::EngineStats s;
        s.n_running = int(held_.size());
        return s;
    }
    int max_model_len() const override { return 64; }
    int max_n() const override { return 4; }
    bool healthy() const override { return true; }
    void drain(double) override {}

    std::vector<std::string> aborted_ids() {
        std::lock_guard<std::mutex> lock(mu_);
        return aborted;
    }
    size_t n_held() {
        std::lock_guard<std::mutex> lock(mu_);
        return held_.size();
    }

    bool queue_full = false;
    bool hold = false;
    bool fail_generation = false;
    engine::GenerationRequest last_request;

  private:
    mutable std::mutex mu_;
    std::vector<std::thread> threads_;
    std::map<std::string, std::pair<engine::GenerationRequest, engine::OutputCallback>> held_;
    std::vector<std::string> aborted;
};

std::string qwen3_dir() { return std::string(OSPREY_SHARED_DIR) + "/data/tokenizers/qwen3"; }

struct Client {
    net::io_context ioc;
    tcp::socket sock{ioc};
    beast::flat_buffer buf;
    explicit Client(int port) { sock.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port))); }
    http::response<http::string_body> send(http::verb verb, const std::string& target, const std::string& body = {},
                                           const std::string& auth = {}) {
        http::request<http::string_body> req{verb, target, 11};
        req.set(http::field::host, "localhost");
        if (!auth.empty()) req.set(http::field::authorization, auth);
        if (!body.empty()) {
            req.set(http::field::content_type, "application/json");
            req.body() = body;
        }
        req.prepare_payload();
        http::write(sock, req);
        http::response<http::string_body> res;
        http::read(sock, buf, res);
        return res;
    }
};

class HttpServerTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!std::filesystem::exists(qwen3_dir() + "/tokenizer.json"))
            GTEST_SKIP() << "shared tokenizer missing: " << qwen3_dir();
        tokenizer_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_path(qwen3_dir()));
    }
    void start(const std::string& api_key = {}) {
        ServiceConfig sc;
        sc.served_model_name = "smol";
        sc.api_key = api_key;
        service_ = std::make_unique<OpenAiService>(engine_, *tokenizer_, sc);
        HttpServerConfig hc;
        hc.port = 0;
        hc.max_body_bytes = 1024;
        server_ = std::make_unique<HttpServer>(hc, *service_);
        thread_ = std::thread([this] { server_->run(); });
    }
    void TearDown() override {
        if (server_) server_->stop();
        if (thread_.joinable()) thread_.join();
    }
    int port() const { return server_->port(); }
    json post_json(const std::string& target, const std::string& body, int expect_status) {
        Client c(port());
        auto res = c.send(http::verb::post, target, body);
        EXPECT_EQ(int(res.result_int()), expect_status) << res.body();
        return json::parse(res.body());
    }

    FakeEngine engine_;
    std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
    std::unique_ptr<OpenAiService> service_;
    std::unique_ptr<HttpServer> server_;
    std::thread thread_;
};

}  // namespace

TEST_F(HttpServerTest, CompletionNonStreaming) {
    start();
    const json j =
        post_json("/v1/completions", R"({"model": "smol", "prompt": "hello world", "max_tokens": 3, "n": 2})", 200);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
    EXPECT_EQ(j["model"], "smol");
    ASSERT_EQ(j["choices"].size(), 2u);
    EXPECT_EQ(j["choices"][0]["text"], "<0><1><2>");
    EXPECT_EQ(j["choices"][1]["index"], 1);
    EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
    // Qwen3's tokenizer adds no BOS: "hello world" is 2 tokens ("hello", " world").
    EXPECT_EQ(j["usage"], json::parse(R"({"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8})"));
    EXPECT_EQ(engine_.last_request.prompt.size(), 2u);
    EXPECT_EQ(engine_.last_request.n, 2);
}

TEST_F(HttpServerTest, ChatStreamingSseFraming) {
    start();
    Client c(port());
    auto res = c.send(http::verb::post, "/v1/chat/completions",
                      R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true,
                          "stream_options": {"include_usage": true}})");
    ASSERT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res[http::field::content_type], "text/event-stream");
    EXPECT_TRUE(res.chunked());
    const std::string& b = res.body();
    // Split "data: ...\n\n" events.
    std::vector<std::string> events;
    size_t pos = 0;
    while (pos < b.size()) {
        ASSERT_EQ(b.compare(pos, 6, "data: "), 0) << b.substr(pos);
        const size_t end = b.find("\n\n", pos);
        ASSERT_NE(end, std::string::npos);
        events.push_back(b.substr(pos + 6, end - pos - 6));
        pos = end + 2;
    }
    ASSERT_EQ(events.size(), 6u) << b;  // role, <0>, <1>, finish, usage, [DONE]
    EXPECT_EQ(events.back(), "[DONE]");
    const json role = json::parse(events[0]);
    EXPECT_EQ(role["object"], "chat.completion.chunk");
    EXPECT_EQ(role["choices"][0]["delta"], json::parse(R"({"role": "assistant", "content": ""})"));
    EXPECT_EQ(json::parse(events[1])["choices"][0]["delta"]["content"], "<0>");
    EXPECT_EQ(json::parse(events[2])["choices"][0]["delta"]["content"], "<1>");
    const json fin = json::parse(events[3]);
    EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(fin["choices"][0]["delta"], json::object());
    const json usage = json::parse(events[4]);
    EXPECT_EQ(usage["choices"], json::array());
    EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
    // ChatML: "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" = 9 tokens with special tokens parsed.
    EXPECT_EQ(usage["usage"]["prompt_tokens"], 9);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(json::parse(events[i])["id"], role["id"]);
    // Keep-alive: the same connection serves another request.
    auto again = c.send(http::verb::get, "/v1/models");
    EXPECT_EQ(again.result_int(), 200u);
    EXPECT_EQ(json::parse(again.body())["data"][0]["id"], "smol");
}

TEST_F(HttpServerTest, ErrorStatuses) {
    start();
    Client c(port());
    auto r404 = c.send(http::verb::get, "/v1/nothing");
    EXPECT_EQ(r404.result_int(), 404u);
    EXPECT_EQ(json::parse(r404.body())["error"]["type"], "invalid_request_error");
    auto r405 = c.send(http::verb::get, "/v1/completions");
    EXPECT_EQ(r405.result_int(), 405u);
    EXPECT_EQ(r405[http::field::allow], "POST");
    const json bad = post_json("/v1/completions", "{oops", 400);
    EXPECT_EQ(bad["error"]["type"], "invalid_request_error");
    const json field = post_json("/v1/completions", R"({"prompt": "x", "temperature": "hot"})", 400);
    EXPECT_EQ(field["error"]["param"], "temperature");
    const json model = post_json("/v1/completions", R"({"model": "gpt-9", "prompt": "x"})", 404);
    EXPECT_EQ(model["error"]["code"], "model_not_found");
    const json n = post_json("/v1/completions", R"({"prompt": "x", "n": 5})", 400);
    EXPECT_EQ(n["error"]["param"], "n");
    const json ctx = post_json("/v1/completions", R"({"prompt": "hello world", "max_tokens": 63})", 400);
    EXPECT_EQ(ctx["error"]["code"], "context_length_exceeded");
    EXPECT_NE(ctx["error"]["message"].get<std::string>().find("maximum context length is 64 tokens"),
              std::string::npos);
    EXPECT_NE(ctx["error"]["message"].get<std::string>().find("65 tokens (2 in the prompt, 63 in the completion)"),
              std::string::npos);
    const json tok = post_json("/v1/completions", R"({"prompt": [999999999]})", 400);
    EXPECT_EQ(tok["error"]["param"], "prompt");
}

TEST_F(HttpServerTest, BodyTooLarge) {
    start();
    Client c(port());
    const std::string body = R"({"prompt": ")" + std::string(4000, 'a') + R"("})";
    auto res = c.send(http::verb::post, "/v1/completions", body);
    EXPECT_EQ(res.result_int(), 413u);
    EXPECT_EQ(json::parse(res.body())["error"]["code"], "request_too_large");
}

TEST_F(HttpServerTest, QueueFull429) {
    engine_.queue_full = true;
    start();
    Client c(port());
    auto res = c.send(http::verb::post, "/v1/completions", R"({"prompt": "x"})");
    EXPECT_EQ(res.result_int(), 429u);
    EXPECT_EQ(res["Retry-After"], "1");
}

TEST_F(HttpServerTest, ApiKey) {
    start("sekrit");
    Client c(port());
    EXPECT_EQ(c.send(http::verb::get, "/v1/models").result_int(), 401u);
    EXPECT_EQ(c.send(http::verb::get, "/v1/models", {}, "Bearer wrong").result_int(), 401u);
    EXPECT_EQ(c.send(http::verb::get, "/v1/models", {}, "Bearer sekrit").result_int(), 200u);
    EXPECT_EQ(c.send(http::verb::get, "/health").result_int(), 200u);  // health and metrics stay open
}

TEST_F(HttpServerTest, DisconnectAbortsAndFreesConnection) {
    engine_.hold = true;
    start();
    {
        net::io_context ioc;
        tcp::socket s(ioc);
        s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port())));
        const std::string body = R"({"prompt": "x", "stream": true, "max_tokens": 5})";
        const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        net::write(s, net::buffer(req));
        char buf[256];
        const size_t n = s.read_some(net::buffer(buf));  // the stream's headers
        EXPECT_NE(std::string(buf, n).find("200 OK"), std::string::npos);
        for (int i = 0; i < 100 && engine_.n_held() == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        ASSERT_EQ(engine_.n_held(), 1u);
    }  // closes the socket mid-stream
    for (int i = 0; i < 200 && engine_.aborted_ids().empty(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(engine_.aborted_ids().size(), 1u);
    EXPECT_EQ(engine_.aborted_ids()[0].rfind("cmpl-", 0), 0u);
    for (int i = 0; i < 200 && server_->n_connections() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(server_->n_connections(), 0u);
    EXPECT_EQ(service_->n_active(), 0);
}

TEST_F(HttpServerTest, HealthAndMetrics) {
    start();
    Client c(port());
    EXPECT_EQ(c.send(http::verb::get, "/health").result_int(), 200u);
    c.send(http::verb::get, "/nope");
    auto m = c.send(http::verb::get, "/metrics");
    EXPECT_EQ(m.result_int(), 200u);
    EXPECT_NE(m.body().find("osprey_requests_total{status=\"200\"} 1\n"), std::string::npos) << m.body();
    EXPECT_NE(m.body().find("osprey_requests_total{status=\"404\"} 1\n"), std::string::npos);
    service_->set_draining();
    EXPECT_EQ(Client(port()).send(http::verb::get, "/health").result_int(), 503u);
}

TEST_F(HttpServerTest, CompletionLogprobs) {
    start();
    const json j = post_json("/v1/completions", R"({"prompt": "hi", "max_tokens": 2, "logprobs": 0})", 200);
    const json& lp = j["choices"][0]["logprobs"];
    EXPECT_EQ(lp["token_logprobs"], json::parse("[-0.5, -0.5]"));
    EXPECT_EQ(lp["tokens"].size(), 2u);
    EXPECT_EQ(lp["tokens"][0], tokenizer_->token_to_piece(10));
    EXPECT_EQ(lp["text_offset"][1], tokenizer_->token_to_piece(10).size());
}

TEST_F(HttpServerTest, ExpectContinue) {
    start();
    net::io_context ioc;
    tcp::socket s(ioc);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), uint16_t(port())));
    const std::string body = R"({"prompt": "hi", "max_tokens": 1})";
    net::write(s, net::buffer("POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n"));
    char buf[64];
    const size_t n = s.read_some(net::buffer(buf));
    EXPECT_EQ(std::string(buf, n), "HTTP/1.1 100 Continue\r\n\r\n");
    net::write(s, net::buffer(body));
    beast::flat_buffer fb;
    http::response<http::string_body> res;
    http::read(s, fb, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(json::parse(res.body())["choices"][0]["text"], "<0>");
}

TEST_F(HttpServerTest, EngineErrorIs500OrErrorEvent) {
    engine_.fail_generation = true;
    start();
    const json j = post_json("/v1/completions", R"({"prompt": "hi", "max_tokens": 2})", 500);
    EXPECT_EQ(j["error"]["type"], "server_error");
    EXPECT_EQ(j["error"]["message"], "step failed: injected");
    Client c(port());
    auto res = c.send(http::verb::post, "/v1/completions", R"({"prompt": "hi", "max_tokens": 2, "stream": true})");
    EXPECT_EQ(res.result_int(), 200u);  // headers were sent before the failure: the error is an event
    EXPECT_EQ(res.body(),
              "data: {\"error\":{\"code\":null,\"message\":\"step failed: injected\",\"param\":null,"
              "\"type\":\"server_error\"}}\n\ndata: [DONE]\n\n");
}
