#include "server/http_server.h"

#include <array>
#include <atomic>
#include <deque>
#include <utility>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "server/api_error.h"
#include "server/openai_service.h"

namespace osprey::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

std::chrono::steady_clock::duration to_duration(double s) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

std::string reason_phrase(int status) {
    const auto r = http::obsolete_reason(http::status(status));
    return std::string(r.data(), r.size());
}

constexpr size_t kMaxPipelinedBytes = 1u << 20;  // bytes read ahead while a response is in progress
constexpr double kLingerSeconds = 2.0;            // discarding unread input before closing (so the client sees 413)

}  // namespace

namespace {

// What every session shares.
struct ServerContext {
    HttpServerConfig config;
    OpenAiService& service;
    std::atomic<size_t> n_connections{0};
    std::atomic<size_t> n_busy{0};  // connections with a request in progress
};

}  // namespace

struct HttpServer::Impl {
    ServerContext ctx;
    const HttpServerConfig& config;
    net::io_context ioc;
    tcp::acceptor acceptor;
    net::signal_set signals;
    net::steady_timer accept_retry;
    std::function<void()> on_signal;
    int n_signals = 0;

    Impl(const HttpServerConfig& c, OpenAiService& s)
        : ctx{c, s, {}, {}},
          config(ctx.config),
          ioc(std::max(1, c.n_threads)),
          acceptor(ioc),
          signals(ioc),
          accept_retry(ioc) {}
    void do_accept();
    void wait_signal();
};

namespace {

// One TCP connection. Every handler runs on the connection's strand (stream_'s executor).
class Session final : public ResponseSink, public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket&& socket, ServerContext& server)
        : server_(server), stream_(std::move(socket)), linger_(stream_.get_executor()) {
        ++server_.n_connections;
    }
    ~Session() override { --server_.n_connections; }

    void start() {
        net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
    }

    // ResponseSink
    void post(std::function<void()> fn) override {
        net::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)] { fn(); });
    }

    void reply(int status, const std::string& content_type, std::string body, const Headers& headers) override {
        if (closed_ || response_complete_) return;
        if (server_.service.draining()) keep_alive_ = false;
        std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
                                      status, reason_phrase(status),
                                      content_type, body.size(), keep_alive_ ? "keep-alive" : "close");
        for (const auto& [k, v] : headers) out += fmt::format("{}: {}\r\n", k, v);
        out += "\r\n";
        out += body;
        response_complete_ = true;
        on_disconnect_ = nullptr;
        enqueue(std::move(out));
    }

    void begin_stream() override {
        if (closed_ || response_complete_) return;
        streaming_ = true;
        enqueue("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
    }

    void write(std::string data) override {
        if (closed_ || !streaming_ || data.empty()) return;
        enqueue(fmt::format("{:x}\r\n", data.size()) + data + "\r\n");
    }

    void end_stream() override {
        if (closed_ || !streaming_) return;
        streaming_ = false;
        response_complete_ = true;
        on_disconnect_ = nullptr;
        if (server_.service.draining()) keep_alive_ = false;
        enqueue("0\r\n\r\n");
    }

    void on_disconnect(std::function<void()> fn) override {
        if (closed_) post(std::move(fn));
        else on_disconnect_ = std::move(fn);
    }

  private:
    void do_read() {
        if (closed_) return;
        parser_.emplace();
        parser_->body_limit(server_.config.max_body_bytes);
        parser_->header_limit(uint32_t(server_.config.max_header_bytes));
        stream_.expires_after(to_duration(server_.config.read_timeout_s));
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
    }

    // Headers are in: answer "Expect: 100-continue" (curl sends it for large bodies), then read the body.
    void on_header(beast::error_code ec) {
        if (closed_) return;
        if (ec) {
            on_read(ec);
            return;
        }
        auto read_body = [self = shared_from_this()] {
            self->stream_.expires_after(to_duration(self->server_.config.read_timeout_s));
            http::async_read(self->stream_, self->buffer_, *self->parser_,
                             [self](beast::error_code e, size_t) { self->on_read(e); });
        };
        const auto expect = parser_->get()[http::field::expect];
        if (!parser_->is_done() && beast::iequals(expect, "100-continue")) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                             [self = shared_from_this(), read_body](beast::error_code e, size_t) {
                                 if (e) self->on_read(e);
                                 else read_body();
                             });
            return;
        }
        read_body();
    }

    void on_read(beast::error_code ec) {
        if (closed_) return;
        stream_.expires_never();
        if (ec == http::error::body_limit || ec == http::error::header_limit) {
            in_request_ = true;
            keep_alive_ = false;
            const bool body = ec == http::error::body_limit;
            server_.service.reply_error(
                *this, ApiError(body ? ErrorKind::BodyTooLarge : ErrorKind::InvalidField,
                                body ? fmt::format("the request body is larger than {} bytes (--max-body-bytes)",
                                                   server_.config.max_body_bytes)
                                     : std::string("the request headers are too large")));
            return;
        }
        if (ec) {
            if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                ec != http::error::end_of_stream && ec != http::error::partial_message) {
                in_request_ = true;
                keep_alive_ = false;
                server_.service.reply_error(*this, ApiError(ErrorKind::MalformedJson,
                                                            "malformed HTTP request: " + ec.message()));
                return;
            }
            close();  // end of stream, timeout, reset
            return;
        }
        auto& req = parser_->get();
        keep_alive_ = req.keep_alive();
        HttpRequest r;
        r.method = std::string(req.method_string());
        r.target = std::string(req.target());
        if (auto it = req.find(http::field::authorization); it != req.end()) r.authorization = std::string(it->value());
        r.body = std::move(req.body());
        parser_.reset();
        in_request_ = true;
        response_complete_ = false;
        set_busy(true);
        start_watch();
        server_.service.handle(r, shared_from_this());
    }

    // While a request is in progress, a read on the socket tells us when the client goes away.
    void start_watch() {
        if (watching_ || closed_) return;
        watching_ = true;
        stream_.socket().async_read_some(net::buffer(watch_buf_),
                                         [self = shared_from_this()](beast::error_code ec, size_t n) {
                                             self->on_watch(ec, n);
                                         });
    }

    void on_watch(beast::error_code ec, size_t n) {
        watching_ = false;
        if (closed_) return;
        if (closing_) {  // lingering: discard until EOF
            if (ec) close();
            else start_watch();
            return;
        }
        if (!ec) {
            auto dst = buffer_.prepare(n);
            net::buffer_copy(dst, net::buffer(watch_buf_.data(), n));
            buffer_.commit(n);
        } else if (ec != net::error::operation_aborted) {
            client_gone();
            return;
        }
        if (in_request_) {
            if (!ec && buffer_.size() < kMaxPipelinedBytes) start_watch();
            return;
        }
        if (!writing_) do_read();
    }

    void enqueue(std::string data) {
        if (closed_ || closing_) return;
        queued_bytes_ += data.size();
        if (queued_bytes_ > server_.config.max_buffered_output) {
            spdlog::warn("client too slow: {} bytes unsent, closing the connection", queued_bytes_);
            client_gone();
            return;
        }
        queue_.push_back(std::move(data));
        if (!writing_) do_write();
    }

    void do_write() {
        if (queue_.size() == 1) {
            out_ = std::move(queue_.front());
        } else {
            out_.clear();
            for (const std::string& s : queue_) out_ += s;
        }
        queue_.clear();
        writing_ = true;
        stream_.expires_after(to_duration(server_.config.write_timeout_s));
        net::async_write(stream_, net::buffer(out_),
                         [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
    }

    void on_write(beast::error_code ec) {
        writing_ = false;
        if (closed_) return;
        stream_.expires_never();
        if (ec) {
            client_gone();
            return;
        }
        queued_bytes_ -= out_.size();
        out_.clear();
        if (!queue_.empty()) {
            do_write();
            return;
        }
        if (response_complete_ && in_request_) after_response();
    }

    void set_busy(bool busy) {
        if (busy == busy_) return;
        busy_ = busy;
        if (busy) ++server_.n_busy;
        else --server_.n_busy;
    }

    void after_response() {
        in_request_ = false;
        set_busy(false);
        on_disconnect_ = nullptr;
        if (!keep_alive_ || server_.service.draining()) {
            linger_close();
            return;
        }
        if (watching_) {
            beast::error_code ec;
            stream_.socket().cancel(ec);  // on_watch continues with the next request
            return;
        }
        do_read();
    }

    void client_gone() {
        if (on_disconnect_) {
            auto fn = std::move(on_disconnect_);
            on_disconnect_ = nullptr;
            fn();
        }
        close();
    }

    // Half-close, then discard input for a moment so the client reads our response rather than a reset.
    void linger_close() {
        closing_ = true;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec) {
            close();
            return;
        }
        linger_.expires_after(to_duration(kLingerSeconds));
        linger_.async_wait([self = shared_from_this()](beast::error_code) { self->close(); });
        start_watch();
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        set_busy(false);
        on_disconnect_ = nullptr;
        queue_.clear();
        linger_.cancel();
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

    ServerContext& server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::array<char, 512> watch_buf_{};
    net::steady_timer linger_;
    std::deque<std::string> queue_;
    std::string out_;
    size_t queued_bytes_ = 0;
    bool writing_ = false;
    bool watching_ = false;
    bool in_request_ = false;
    bool response_complete_ = false;
    bool streaming_ = false;
    bool keep_alive_ = true;
    bool closing_ = false;
    bool closed_ = false;
    bool busy_ = false;
    std::function<void()> on_disconnect_;
};

}  // namespace

void HttpServer::Impl::do_accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (!acceptor.is_open()) return;
        if (ec) {
            // Out of file descriptors or similar: retry shortly instead of spinning.
            spdlog::warn("accept failed: {}", ec.message());
            accept_retry.expires_after(std::chrono::milliseconds(50));
            accept_retry.async_wait([this](beast::error_code e) {
                if (!e) do_accept();
            });
            return;
        }
        beast::error_code opt_ec;
        socket.set_option(tcp::no_delay(true), opt_ec);
        std::make_shared<Session>(std::move(socket), ctx)->start();
        do_accept();
    });
}

void HttpServer::Impl::wait_signal() {
    signals.async_wait([this](beast::error_code ec, int signo) {
        if (ec) return;
        if (++n_signals == 1) {
            spdlog::info("signal {}: draining (a second signal stops at once)", signo);
            if (on_signal) on_signal();
            wait_signal();
        } else {
            spdlog::warn("signal {}: stopping now", signo);
            ioc.stop();
        }
    });
}

HttpServer::HttpServer(const HttpServerConfig& config, OpenAiService& service)
    : impl_(std::make_unique<Impl>(config, service)) {
    try {
        const tcp::endpoint ep(net::ip::make_address(config.host), uint16_t(config.port));
        impl_->acceptor.open(ep.protocol());
        impl_->acceptor.set_option(net::socket_base::reuse_address(true));
        impl_->acceptor.bind(ep);
        impl_->acceptor.listen(net::socket_base::max_listen_connections);
    } catch (const boost::system::system_error& e) {
        raise(ErrorCode::Io, "cannot listen on {}:{}: {}", config.host, config.port, e.what());
    }
    impl_->do_accept();
}

HttpServer::~HttpServer() = default;

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::run() {
    std::vector<std::thread> threads;
    for (int i = 1; i < impl_->config.n_threads; ++i) threads.emplace_back([this] { impl_->ioc.run(); });
    impl_->ioc.run();
    for (std::thread& t : threads) t.join();
}

void HttpServer::stop_accepting() {
    net::post(impl_->ioc, [impl = impl_.get()] {
        beast::error_code ec;
        impl->acceptor.close(ec);
        impl->accept_retry.cancel();
    });
}

void HttpServer::stop() { impl_->ioc.stop(); }

void HttpServer::handle_signals(std::function<void()> on_signal) {
    impl_->on_signal = std::move(on_signal);
    impl_->signals.add(SIGINT);
    impl_->signals.add(SIGTERM);
    impl_->wait_signal();
}

size_t HttpServer::n_connections() const { return impl_->ctx.n_connections; }

}  // namespace osprey::server

namespace osprey::server {
size_t HttpServer::n_busy_connections() const { return impl_->ctx.n_busy; }
}  // namespace osprey::server
