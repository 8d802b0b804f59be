#include "unit/bench/scripted_server.h"

#include <utility>  // boost 1.74 asio/awaitable.hpp uses std::exchange without including it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <regex>

namespace osprey::bench::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using nlohmann::json;

struct ScriptedServer::Impl {
    net::io_context ioc;
    tcp::acceptor acceptor{ioc};
    mutable std::mutex mu;
    std::vector<std::chrono::steady_clock::time_point> arrivals;
    int active = 0, max_active = 0;
};

namespace {

int script_value(const std::string& text, const char* key, int fallback) {
    std::smatch m;
    if (std::regex_search(text, m, std::regex(std::string(key) + "=(\\d+)"))) return std::stoi(m[1]);
    return fallback;
}

std::string chunk(const std::string& payload) {
    char head[32];
    std::snprintf(head, sizeof head, "%zx\r\n", payload.size());
    return head + payload + "\r\n";
}

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket socket, ScriptedServer::Impl& impl) : socket_(std::move(socket)), timer_(socket_.get_executor()), impl_(impl) {}

    void start() {
        http::async_read(socket_, buffer_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return;
            self->respond();
        });
    }

  private:
    void respond() {
        t0_ = std::chrono::steady_clock::now();
        int active = 0;
        {
            std::lock_guard<std::mutex> lock(impl_.mu);
            impl_.arrivals.push_back(t0_);
            active = ++impl_.active;
            impl_.max_active = std::max(impl_.max_active, active);
        }
        json body = json::parse(req_.body(), nullptr, false);
        chat_ = req_.target().find("chat") != beast::string_view::npos;
        std::string script;
        if (!body.is_discarded()) {
            if (chat_ && body.contains("messages")) script = body["messages"][0]["content"].get<std::string>();
            else if (body.contains("prompt")) script = body["prompt"].get<std::string>();
        }
        first_ = script_value(script, "first", 100) + (active - 1) * script_value(script, "per_active", 0);
        gap_ = script_value(script, "gap", 20);
        n_ = script_value(script, "n", 5);
        prompt_tokens_ = script_value(script, "prompt_tokens", 7);
        const int status = script_value(script, "status", 200);
        if (status != 200) {
            const std::string err = R"({"error":{"message":"scripted failure","code":)" + std::to_string(status) + "}}";
            out_ = "HTTP/1.1 " + std::to_string(status) + " Error\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(err.size()) + "\r\nConnection: close\r\n\r\n" + err;
            return write_then([self = shared_from_this()] { self->close(); });
        }
        out_ = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
               "Connection: close\r\n\r\n";
        write_then([self = shared_from_this()] { self->next(0); });
    }

    void next(int k) {
        if (k == n_) {
            json usage = {{"id", "x"}, {"choices", json::array()},
                          {"usage", {{"prompt_tokens", prompt_tokens_}, {"completion_tokens", n_},
                                     {"total_tokens", prompt_tokens_ + n_}}}};
            out_ = chunk("data: " + usage.dump() + "\n\n") + chunk("data: [DONE]\n\n") + "0\r\n\r\n";
            return write_then([self = shared_from_this()] { self->close(); });
        }
        timer_.expires_at(t0_ + std::chrono::milliseconds(first_ + k * gap_));
        timer_.async_wait([self = shared_from_this(), k](beast::error_code ec) {
            if (ec) return;
            json c;
            if (self->chat_)
                c = {{"id", "x"}, {"choices", {{{"index", 0}, {"delta", {{"content", "t" + std::to_string(k) + " "}}}}}}};
            else
                c = {{"id", "x"}, {"choices", {{{"index", 0}, {"text", "t" + std::to_string(k) + " "}}}}};
            self->out_ = chunk("data: " + c.dump() + "\n\n");
            self->write_then([self, k] { self->next(k + 1); });
        });
    }

    template <typename F>
    void write_then(F then) {
        net::async_write(socket_, net::buffer(out_), [self = shared_from_this(), then](beast::error_code ec, size_t) {
            if (ec) return self->close();
            then();
        });
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        {
            std::lock_guard<std::mutex> lock(impl_.mu);
            --impl_.active;
        }
        beast::error_code ec;
        socket_.shutdown(tcp::socket::shutdown_both, ec);
    }

    tcp::socket socket_;
    net::steady_timer timer_;
    ScriptedServer::Impl& impl_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    std::chrono::steady_clock::time_point t0_;
    bool chat_ = false, closed_ = false;
    int first_ = 0, gap_ = 0, n_ = 0, prompt_tokens_ = 0;
    std::string out_;
};

void accept_loop(ScriptedServer::Impl& impl) {
    impl.acceptor.async_accept([&impl](beast::error_code ec, tcp::socket socket) {
        if (ec) return;
        std::make_shared<Session>(std::move(socket), impl)->start();
        accept_loop(impl);
    });
}

}  // namespace

ScriptedServer::ScriptedServer() : impl_(std::make_unique<Impl>()) {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(net::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen(1024);
    port_ = impl_->acceptor.local_endpoint().port();
    accept_loop(*impl_);
    thread_ = std::thread([this] { impl_->ioc.run(); });
}

ScriptedServer::~ScriptedServer() {
    impl_->ioc.stop();
    thread_.join();
}

std::vector<std::chrono::steady_clock::time_point> ScriptedServer::arrivals() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->arrivals;
}

void ScriptedServer::clear() {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->arrivals.clear();
    impl_->max_active = impl_->active;
}

int ScriptedServer::max_active() const {
    std::lock_guard<std::mutex> lock(impl_->mu);
    return impl_->max_active;
}

}  // namespace osprey::bench::testing
