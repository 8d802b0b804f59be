// osprey serve: the OpenAI-compatible HTTP server (src/server) over the engine, with vLLM's flag names.
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>

#include "backend/cpu/cpu_backend.h"
#include "cli/commands.h"
#include "cli/device_option.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "server/http_server.h"
#include "server/openai_service.h"
#include "server/serving_engine.h"

namespace osprey::cli {

namespace {

struct ServeOptions {
    std::string model;
    std::string host = "127.0.0.1";
    int port = 8000;
    std::string api_key;
    std::string served_model_name;
    engine::EngineConfig engine;
    std::string kv_cache_memory;
    std::string kv_cache_dtype = "auto";
    bool enforce_eager = false;
    std::string scheduling = "continuous";
    std::string async_scheduling;  // empty: not given, or given without a value (vLLM's flag form: on)
    const CLI::Option* async_scheduling_option = nullptr;  // its count tells a bare flag from no flag
    int threads = 0;
    std::string device = "auto";
    int http_threads = 1;
    std::string max_body_bytes = "4MiB";
    double drain_timeout = 30;
};

// "512MiB", "1GiB", "64M", "1000000" -> bytes.
size_t parse_bytes(const std::string& text, const char* flag) {
    size_t pos = 0;
    double value = 0;
    try {
        value = std::stod(text, &pos);
    } catch (const std::exception&) {
        raise(ErrorCode::InvalidArgument, "{}: '{}' is not a size (e.g. 512MiB, 2GiB, 1048576)", flag, text);
    }
    std::string unit = text.substr(pos);
    while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
    double mult = 1;
    if (unit.empty() || unit == "B") mult = 1;
    else if (unit == "K" || unit == "KiB" || unit == "k") mult = 1024.0;
    else if (unit == "M" || unit == "MiB") mult = 1024.0 * 1024;
    else if (unit == "G" || unit == "GiB") mult = 1024.0 * 1024 * 1024;
    else if (unit == "KB" || unit == "kB") mult = 1e3;
    else if (unit == "MB") mult = 1e6;
    else if (unit == "GB") mult = 1e9;
    else
        raise(ErrorCode::InvalidArgument, "{}: unknown unit '{}' in '{}' (use B, KiB, MiB, GiB, KB, MB, GB)", flag,
              unit, text);
    if (!(value > 0)) raise(ErrorCode::InvalidArgument, "{}: '{}' must be positive", flag, text);
    return size_t(value * mult);
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

std::string default_served_name(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return std::filesystem::path(path).filename().string();
}

void serve(ServeOptions o) {
    const std::string path = o.model.empty() ? engine::default_model_path() : o.model;
    o.engine.kv_dtype = parse_kv_cache_dtype(o.kv_cache_dtype);
    if (!o.kv_cache_memory.empty()) o.engine.kv_cache_bytes = parse_bytes(o.kv_cache_memory, "--kv-cache-memory");
    o.engine.async_scheduling = parse_async_scheduling(
        o.async_scheduling, o.async_scheduling_option && o.async_scheduling_option->count() > 0);
    o.engine.scheduling = o.scheduling == "static" ? engine::SchedulingPolicy::Static
                                                   : engine::SchedulingPolicy::Continuous;
    o.engine.validate();
    server::HttpServerConfig http;
    http.host = o.host;
    http.port = o.port;
    http.n_threads = o.http_threads;
    http.max_body_bytes = parse_bytes(o.max_body_bytes, "--max-body-bytes");
    raise_fd_limit();

    auto backend = make_backend(o.device, o.threads);
    engine::LoadOptions lo;
    lo.enforce_eager = o.enforce_eager;
    engine::LoadedModel m = engine::load_model(path, *backend, lo);
    if (!m.tokenizer) raise(ErrorCode::NotFound, "{}: the model has no tokenizer", path);
    spdlog::info("loaded {} in {:.2f} s ({})", path, m.load_seconds, backend->name());

    // Without --max-model-len, shorten the context (halving) until one full-length sequence fits the KV budget.
    std::unique_ptr<engine::Engine> eng;
    const bool auto_len = o.engine.max_model_len == 0;
    for (int len = m.config.max_context;;) {
        try {
            eng = std::make_unique<engine::Engine>(*m.model, *m.tokenizer, o.engine);
            break;
        } catch (const Error& e) {
            if (e.code() != ErrorCode::OutOfMemory || !auto_len || len <= 2 * o.engine.block_size) throw;
            len /= 2;
            spdlog::warn("{}; trying --max-model-len {}", e.what(), len);
            o.engine.max_model_len = len;
        }
    }
    const int capacity = eng->kv_tokens_capacity();
    spdlog::info("KV cache: {} tokens fit ({} blocks of {} tokens, {} MiB); max_model_len {}; {:.2f}x concurrency "
                 "at full length",
                 capacity, capacity / std::max(1, o.engine.block_size), o.engine.block_size,
                 eng->config().kv_cache_bytes >> 20, eng->max_model_len(), double(capacity) / eng->max_model_len());
    auto api = server::wrap_engine(*eng);

    server::ServiceConfig sc;
    sc.served_model_name = o.served_model_name.empty() ? default_served_name(path) : o.served_model_name;
    sc.model_aliases = {path};
    sc.api_key = o.api_key;
    server::OpenAiService service(*api, *m.tokenizer, sc);
    server::HttpServer srv(http, service);

    std::thread drainer;
    srv.handle_signals([&] {
        srv.stop_accepting();
        service.set_draining();
        drainer = std::thread([&] {
            const auto t0 = std::chrono::steady_clock::now();
            api->drain(o.drain_timeout);
            // Let the last events reach their clients.
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            while ((service.n_active() > 0 || srv.n_busy_connections() > 0) &&
                   std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            spdlog::info("drained in {:.2f} s; exiting",
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            srv.stop();
        });
    });
    spdlog::info("serving '{}' on http://{}:{} (OpenAI API at /v1; {} HTTP thread(s))", sc.served_model_name, o.host,
                 srv.port(), http.n_threads);
    srv.run();
    if (drainer.joinable()) drainer.join();
    eng.reset();  // no more callbacks into sessions before the io_context goes
}

}  // namespace

void register_serve_command(CLI::App& app) {
    auto o = std::make_shared<ServeOptions>();
    CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, "
                                                "/v1/models, /health, /metrics)");
    cmd->add_option("-m,--model", o->model, "GGUF file or Hugging Face folder (default: SmolLM2-135M-Instruct Q4_1)");
    cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
    cmd->add_option("--port", o->port, "Port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
    cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on /v1 routes");
    cmd->add_option("--served-model-name", o->served_model_name, "Model name in the API (default: the file name)");
    cmd->add_option("--max-num-seqs", o->engine.max_num_seqs, "Sequences running at once")->capture_default_str();
    o->engine.max_num_batched_tokens = 0;  // the engine picks the device's default
    cmd->add_option("--max-num-batched-tokens", o->engine.max_num_batched_tokens,
                    "Tokens per engine step (default: 512 on the CPU, 8192 on a GPU)");
    cmd->add_option("--max-model-len", o->engine.max_model_len, "Context length (default: the model's)");
    cmd->add_option("--block-size", o->engine.block_size, "Tokens per KV block")->capture_default_str();
    cmd->add_option("--kv-cache-dtype", o->kv_cache_dtype, kKvCacheDtypeHelp)->capture_default_str();
    cmd->add_flag("--enforce-eager", o->enforce_eager, kEnforceEagerHelp);
    cmd->add_option("--kv-cache-memory", o->kv_cache_memory,
                    "KV cache budget, e.g. 512MiB (default: auto, 2 GiB on the CPU)");
    cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", o->engine.enable_prefix_caching,
                  "Reuse KV blocks of shared prompt prefixes (default: on)");
    o->async_scheduling_option =
        cmd->add_option("--async-scheduling", o->async_scheduling, kAsyncSchedulingHelp)
            ->expected(0, 1)
            ->check(CLI::IsMember({"auto", "on", "off"}));
    cmd->add_option("--scheduling", o->scheduling, "continuous (default) or static (baseline)")
        ->check(CLI::IsMember({"continuous", "static"}));
    cmd->add_option("--max-waiting", o->engine.max_waiting_requests, "Queued requests before 429")
        ->capture_default_str();
    cmd->add_option("--max-n", o->engine.max_n, "Largest 'n' per request")->capture_default_str();
    cmd->add_option("-t,--threads", o->threads, "CPU threads for the model (default: one per core)");
    cmd->add_option("--device", o->device, kDeviceHelp);
    cmd->add_option("--gpu-memory-utilization", o->engine.gpu_memory_utilization,
                    "GPU: share of device memory for weights, activations and the KV cache")
        ->check(CLI::Range(0.05, 1.0))->capture_default_str();
    cmd->add_option("--http-threads", o->http_threads, "Threads running the HTTP event loop")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--max-body-bytes", o->max_body_bytes, "Largest request body (413 above)")->capture_default_str();
    cmd->add_option("--drain-timeout", o->drain_timeout, "Seconds in-flight requests get to finish on SIGTERM")
        ->capture_default_str();
    cmd->callback([o] { serve(*o); });
}

}  // namespace osprey::cli
