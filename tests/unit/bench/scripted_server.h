// ScriptedServer: an in-process OpenAI-style streaming server on a loopback port, for benchmark tests. Each request's
// prompt (or chat message) carries its script, "first=MS gap=MS n=N [per_active=MS] [prompt_tokens=P] [status=CODE]":
// the first chunk is written MS (plus per_active MS for every other stream open when it arrived) after the request
// was read, then one chunk every gap ms (on an absolute schedule, so delays do not
// accumulate), N chunks in all, each with one token of text; then a usage chunk (completion_tokens = N) and
// [DONE]. The response is written by hand as chunked transfer encoding, independent of the client under test.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace osprey::bench::testing {

class ScriptedServer {
  public:
    ScriptedServer();
    ~ScriptedServer();
    int port() const { return port_; }
    // Times at which requests were read (in order of arrival), and the most streams open at once.
    std::vector<std::chrono::steady_clock::time_point> arrivals() const;
    int max_active() const;
    void clear();  // forgets the arrivals and the maximum

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace osprey::bench::testing
