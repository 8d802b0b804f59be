#include "bench/http_stream_client.h"

#include <array>
#include <limits>

#include <boost/asio/connect.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "bench/sse_parser.h"
#include "core/error.h"

namespace osprey::bench {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

BaseUrl parse_base_url(const std::string& url) {
    std::string rest = url;
    if (rest.rfind("https://", 0) == 0)
        raise(ErrorCode::Unsupported, "--base-url {}: https is not supported (use http://)", url);
    if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
    BaseUrl b;
    const size_t slash = rest.find('/');
    std::string authority = rest.substr(0, slash);
    if (slash != std::string::npos) b.prefix = rest.substr(slash);
    while (!b.prefix.empty() && b.prefix.back() == '/') b.prefix.pop_back();
    const size_t colon = authority.rfind(':');
    if (colon != std::string::npos && authority.find(']') == std::string::npos) {
        b.host = authority.substr(0, colon);
        b.port = authority.substr(colon + 1);
    } else {
        b.host = authority;
        b.port = "80";
    }
    if (b.host.size() > 1 && b.host.front() == '[' && b.host.back() == ']') b.host = b.host.substr(1, b.host.size() - 2);
    if (b.host.empty() || b.port.empty() || b.port.find_first_not_of("0123456789") != std::string::npos)
        raise(ErrorCode::InvalidArgument, "--base-url '{}' is not http://HOST[:PORT][/PATH]", url);
    return b;
}

namespace {

class StreamCall : public std::enable_shared_from_this<StreamCall> {
  public:
    StreamCall(net::io_context& ioc, StreamRequest request, EventHandler on_event, DoneHandler on_done)
        : stream_(ioc), request_(std::move(request)), on_event_(std::move(on_event)), on_done_(std::move(on_done)) {}

    void start(const tcp::resolver::results_type& address) {
        stream_.expires_after(std::chrono::milliseconds(int64_t(request_.timeout_s * 1000)));
        stream_.async_connect(address, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
            if (ec) return self->fail("connect", ec);
            self->write();
        });
    }

  private:
    void write() {
        req_.method(http::verb::post);
        req_.target(request_.target);
        req_.version(11);
        req_.set(http::field::host, request_.host_header);
        req_.set(http::field::user_agent, "osprey-bench");
        req_.set(http::field::content_type, "application/json");
        req_.set(http::field::accept, "text/event-stream");
        if (!request_.api_key.empty()) req_.set(http::field::authorization, "Bearer " + request_.api_key);
        req_.body() = request_.body;
        req_.prepare_payload();
        http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
            if (ec) return self->fail("write", ec);
            self->parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
            http::async_read_header(self->stream_, self->buffer_, self->parser_,
                                    [self](beast::error_code ec2, size_t) {
                                        if (ec2) return self->fail("read header", ec2);
                                        self->result_.status = int(self->parser_.get().result_int());
                                        self->read_body();
                                    });
        });
    }

    void read_body() {
        auto& body = parser_.get().body();
        body.data = chunk_.data();
        body.size = chunk_.size();
        http::async_read_some(stream_, buffer_, parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
            const auto now = Clock::now();
            if (ec == http::error::need_buffer) ec = {};
            const size_t n = self->chunk_.size() - self->parser_.get().body().size;
            self->take(std::string_view(self->chunk_.data(), n), now);
            if (ec && ec != http::error::end_of_stream) return self->fail("read body", ec);
            if (ec == http::error::end_of_stream || self->parser_.is_done()) return self->finish(now);
            self->read_body();
        });
    }

    void take(std::string_view bytes, Clock::time_point now) {
        if (bytes.empty()) return;
        if (result_.status != 200) {
            if (error_body_.size() < 4096) error_body_.append(bytes.substr(0, 4096 - error_body_.size()));
            return;
        }
        for (const std::string& payload : sse_.feed(bytes)) on_event_(payload, now);
    }

    void finish(Clock::time_point now) {
        if (result_.status == 200) {
            for (const std::string& payload : sse_.finish()) on_event_(payload, now);
        } else {
            result_.error = "HTTP " + std::to_string(result_.status) + ": " + error_body_;
        }
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        done(now);
    }

    void fail(const char* what, beast::error_code ec) {
        result_.error = std::string(what) + ": " + ec.message();
        done(Clock::now());
    }

    void done(Clock::time_point now) {
        if (!on_done_) return;
        auto cb = std::move(on_done_);
        on_done_ = nullptr;
        cb(result_, now);
    }

    beast::tcp_stream stream_;
    StreamRequest request_;
    EventHandler on_event_;
    DoneHandler on_done_;
    http::request<http::string_body> req_;
    beast::flat_buffer buffer_;
    http::response_parser<http::buffer_body> parser_;
    std::array<char, 16384> chunk_{};
    SseParser sse_;
    std::string error_body_;
    StreamResult result_;
};

}  // namespace

void start_stream_request(net::io_context& ioc, const tcp::resolver::results_type& address, StreamRequest request,
                          EventHandler on_event, DoneHandler on_done) {
    auto call = std::make_shared<StreamCall>(ioc, std::move(request), std::move(on_event), std::move(on_done));
    call->start(address);
}

}  // namespace osprey::bench
