// HttpServer: HTTP/1.1 on Boost.Beast + Asio. A few threads run one io_context; each connection is a session on
// its own strand with keep-alive, a body limit (413), timeouts for idle and slow clients, a bounded output queue,
// and disconnect detection while a response is in progress (the service aborts the engine request).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace osprey::server {

class OpenAiService;

struct HttpServerConfig {
    std::string host = "127.0.0.1";
    int port = 8000;                       // 0: any free port (see port())
    int n_threads = 1;                     // io_context threads
    size_t max_body_bytes = 4u << 20;      // larger bodies get 413
    size_t max_header_bytes = 64u << 10;
    double read_timeout_s = 60;            // a whole request (and keep-alive idle time)
    double write_timeout_s = 60;           // one write to a client
    size_t max_buffered_output = 4u << 20; // unsent bytes per connection before the client counts as gone
};

class HttpServer {
  public:
    // Binds and listens. Throws Error(Io) if the address cannot be bound.
    HttpServer(const HttpServerConfig& config, OpenAiService& service);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    int port() const;
    // Runs the io threads (this one included) until stop().
    void run();
    // Thread-safe: stop accepting new connections; idle keep-alive connections are closed after their response.
    void stop_accepting();
    // Thread-safe: stops the io_context (run() returns).
    void stop();
    // on_signal runs once (on an io thread) at the first SIGINT/SIGTERM; a second one stops at once.
    void handle_signals(std::function<void()> on_signal);
    // Live connections (for tests and logs).
    size_t n_connections() const;
    // Connections with a request whose response is not yet fully written.
    size_t n_busy_connections() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace osprey::server
