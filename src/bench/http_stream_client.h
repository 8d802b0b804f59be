// One streaming HTTP POST on Boost.Beast, asynchronous on the caller's io_context: many run at once on one event
// loop. The response body is parsed as Server-Sent Events as bytes arrive and every `data:` payload is handed over
// with the time its bytes were read. Plain http only (no TLS).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace osprey::bench {

using Clock = std::chrono::steady_clock;

struct BaseUrl {
    std::string host;    // "127.0.0.1"
    std::string port;    // "8000"
    std::string prefix;  // path before the endpoint, without a trailing '/' ("" or "/proxy")
};

// "http://host[:port][/prefix]" -> parts. Throws Error(InvalidArgument), Error(Unsupported) for https.
BaseUrl parse_base_url(const std::string& url);

struct StreamRequest {
    std::string host_header;  // "host:port"
    std::string target;       // "/v1/completions"
    std::string body;         // JSON
    std::string api_key;      // sent as "Authorization: Bearer KEY" when not empty
    double timeout_s = 6 * 3600.0;
};

struct StreamResult {
    int status = 0;      // HTTP status; 0 when no response came
    std::string error;   // transport error, or the body of a non-200 response; empty on success
};

using EventHandler = std::function<void(std::string_view payload, Clock::time_point when)>;
using DoneHandler = std::function<void(const StreamResult& result, Clock::time_point when)>;

// Connects, sends, and streams; `on_event` runs for each data payload, then `on_done` exactly once. Both run on the
// io_context's thread.
void start_stream_request(boost::asio::io_context& ioc, const boost::asio::ip::tcp::resolver::results_type& address,
                          StreamRequest request, EventHandler on_event, DoneHandler on_done);

}  // namespace osprey::bench
