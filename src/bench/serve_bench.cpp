#include "bench/serve_bench.h"

#include <cmath>
#include <cstdio>
#include <deque>

#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "bench/arrivals.h"
#include "bench/http_stream_client.h"
#include "core/error.h"

namespace osprey::bench {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;

bool is_chat_endpoint(const std::string& endpoint) {
    return endpoint.size() >= 16 && endpoint.compare(endpoint.size() - 16, 16, "chat/completions") == 0;
}

std::string request_body(const ServeConfig& c, const SampleRequest& s) {
    json b;
    b["model"] = c.model;
    if (is_chat_endpoint(c.endpoint)) {
        b["messages"] = json::array({json{{"role", "user"}, {"content", s.prompt}}});
        b["max_completion_tokens"] = s.expected_output_len;
    } else {
        b["prompt"] = s.prompt;
        b["max_tokens"] = s.expected_output_len;
    }
    b["temperature"] = 0.0;
    b["stream"] = true;
    b["stream_options"] = json{{"include_usage", true}};
    if (c.ignore_eos) b["ignore_eos"] = true;
    return b.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Folds one SSE payload into a request's record, as vLLM's openai / openai-chat request functions do.
struct Tracker {
    RequestResult* out = nullptr;
    bool chat = false;
    Clock::time_point st;
    Clock::time_point last;
    bool first = false;

    void on_event(std::string_view payload, Clock::time_point t) {
        if (payload == "[DONE]") return;
        json d = json::parse(payload, nullptr, false);
        if (d.is_discarded() || !d.is_object()) return;
        if (d.contains("error")) {
            const json& e = d["error"];
            out->error = e.is_object() && e.contains("message") && e["message"].is_string()
                             ? e["message"].get<std::string>() : e.dump();
            return;
        }
        const json* choices = d.contains("choices") && d["choices"].is_array() && !d["choices"].empty()
                                  ? &d["choices"] : nullptr;
        if (choices) {
            const json& c0 = (*choices)[0];
            const json* text = nullptr;
            if (chat) {
                if (c0.contains("delta") && c0["delta"].is_object() && c0["delta"].contains("content"))
                    text = &c0["delta"]["content"];
            } else if (c0.contains("text")) {
                text = &c0["text"];
            }
            if (!first) {
                first = true;
                out->ttft = seconds(t - st);
            } else {
                out->itl.push_back(seconds(t - last));
            }
            if (text && text->is_string()) out->generated_text += text->get<std::string>();
            ++out->n_chunks;
            last = t;
        }
        if (d.contains("usage") && d["usage"].is_object()) {
            const json& u = d["usage"];
            if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
                out->output_tokens = u["completion_tokens"].get<int>();
            if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
                out->usage_prompt_tokens = u["prompt_tokens"].get<int>();
        }
        if (chat && (choices || d.contains("usage"))) last = t;
    }
};

class Runner {
  public:
    Runner(const ServeConfig& c, const std::vector<SampleRequest>& samples) : c_(c), samples_(samples) {
        const BaseUrl url = parse_base_url(c.base_url);
        host_header_ = url.host + ":" + url.port;
        target_ = url.prefix + (c.endpoint.empty() || c.endpoint[0] != '/' ? "/" : "") + c.endpoint;
        tcp::resolver resolver(ioc_);
        boost::system::error_code ec;
        address_ = resolver.resolve(url.host, url.port, ec);
        if (ec) raise(ErrorCode::Io, "--base-url {}: cannot resolve {}: {}", c.base_url, url.host, ec.message());
        chat_ = is_chat_endpoint(c.endpoint);
    }

    // One request on its own, outside the measured run.
    RequestResult single(const SampleRequest& s) {
        RequestResult r;
        start_ = Clock::now();
        send(s, r, [] {});
        ioc_.run();
        ioc_.restart();
        return r;
    }

    ServeRun run() {
        ServeRun run;
        const int n = int(samples_.size());
        run.outputs.resize(size_t(n));
        run.arrivals = arrival_times(n, c_.request_rate, c_.burstiness, c_.seed);
        outputs_ = &run.outputs;
        start_ = Clock::now();
        net::steady_timer timer(ioc_);
        std::function<void()> schedule = [&] {
            const auto now = Clock::now();
            while (next_ < n && seconds(now - start_) >= run.arrivals[size_t(next_)]) arrive(next_++);
            if (next_ >= n) return;
            timer.expires_at(start_ + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(run.arrivals[size_t(next_)])));
            timer.async_wait([&](boost::system::error_code) { schedule(); });
        };
        schedule();
        net::steady_timer ticker(ioc_);
        std::function<void()> tick = [&] {
            if (!c_.progress || n_done_ >= n) return;
            draw_progress(n);
            ticker.expires_after(std::chrono::milliseconds(250));
            ticker.async_wait([&](boost::system::error_code) { tick(); });
        };
        tick();
        ioc_.run();
        run.duration = seconds(end_ - start_);
        if (c_.progress) std::fprintf(stderr, "\r\033[K");
        return run;
    }

  private:
    void arrive(int i) {
        if (c_.max_concurrency > 0 && in_flight_ >= c_.max_concurrency) {
            queue_.push_back(i);
            return;
        }
        launch(i);
    }

    void launch(int i) {
        ++in_flight_;
        RequestResult& r = (*outputs_)[size_t(i)];
        send(samples_[size_t(i)], r, [this] {
            --in_flight_;
            ++n_done_;
            end_ = Clock::now();
            if (!queue_.empty()) {
                const int j = queue_.front();
                queue_.pop_front();
                launch(j);
            }
            if (c_.progress) draw_progress(int(samples_.size()));
        });
    }

    void send(const SampleRequest& s, RequestResult& r, std::function<void()> then) {
        auto tracker = std::make_shared<Tracker>();
        tracker->out = &r;
        tracker->chat = chat_;
        tracker->st = Clock::now();
        r.start_time = seconds(tracker->st - start_);
        StreamRequest req;
        req.host_header = host_header_;
        req.target = target_;
        req.body = request_body(c_, s);
        req.api_key = c_.api_key;
        req.timeout_s = c_.request_timeout_s;
        start_stream_request(
            ioc_, address_, std::move(req),
            [tracker](std::string_view payload, Clock::time_point t) { tracker->on_event(payload, t); },
            [tracker, &r, then = std::move(then)](const StreamResult& res, Clock::time_point) {
                if (!res.error.empty()) {
                    r.error = res.error;
                } else if (!tracker->first && r.error.empty()) {
                    r.error = "Never received a valid chunk to calculate TTFT.";
                }
                r.success = r.error.empty();
                if (tracker->first) r.latency = seconds(tracker->last - tracker->st);
                then();
            });
    }

    void draw_progress(int n) {
        int failed = 0;
        for (const RequestResult& r : *outputs_) failed += (!r.success && !r.error.empty()) ? 1 : 0;
        std::fprintf(stderr, "\r\033[K[bench] %d/%d done (%d failed), %d in flight, %d queued, %.1f s", n_done_, n,
                     failed, in_flight_, int(queue_.size()), seconds(Clock::now() - start_));
        std::fflush(stderr);
    }

    const ServeConfig& c_;
    const std::vector<SampleRequest>& samples_;
    net::io_context ioc_;
    tcp::resolver::results_type address_;
    std::string host_header_, target_;
    bool chat_ = false;
    std::vector<RequestResult>* outputs_ = nullptr;
    Clock::time_point start_, end_;
    std::deque<int> queue_;
    int next_ = 0, in_flight_ = 0, n_done_ = 0;
};

}  // namespace

ServeRun run_serve(const ServeConfig& config, const std::vector<SampleRequest>& samples) {
    if (samples.empty()) raise(ErrorCode::InvalidArgument, "no requests to send");
    if (config.max_concurrency < 0) raise(ErrorCode::InvalidArgument, "--max-concurrency must be >= 0");
    if (config.model.empty()) raise(ErrorCode::InvalidArgument, "--model is required (the served model name)");
    Runner runner(config, samples);
    if (config.ready_check) {
        RequestResult r = runner.single(samples[0]);
        if (!r.success)
            raise(ErrorCode::Io, "the initial test request to {}{} failed: {}", config.base_url, config.endpoint,
                  r.error);
    }
    return runner.run();
}

}  // namespace osprey::bench
