// osprey bench serve | sweep | offline: serving benchmarks with vLLM's `bench serve` flags, metrics and result keys
// (src/bench), so numbers compare across engines.
//
// Built only when the osprey target links osprey_bench (CMake defines OSPREY_WITH_BENCH); otherwise this file is
// empty, so the CLI still links while src/bench is not part of the build.
#ifdef OSPREY_WITH_BENCH

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>

#include "bench/dataset.h"
#include "bench/offline_bench.h"
#include "bench/serve_bench.h"
#include "bench/serve_metrics.h"
#include "bench/sweep.h"
#include "cli/commands.h"
#include "cli/device_option.h"
#include "core/error.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace osprey::cli {

namespace {

constexpr const char* kOutputLenDistHelp =
    "Output lengths: uniform in [L(1-r), L(1+r)], or exponential (L * Exp(1) clamped to [1, 8L]: a long tail like "
    "chat replies)";

struct ServeBenchOptions {
    bench::ServeConfig serve;
    bench::DatasetOptions dataset;
    std::string tokenizer;
    std::string request_rate = "inf";
    std::string burstiness = "1";
    std::string percentiles = "99";
    std::string percentile_metrics = "ttft,tpot,itl,e2el";
    std::vector<std::string> goodput;
    double cost_per_hour = 0;
    int num_gpus = 1;
    std::string save_result, report;
    bool skip_ready_check = false;
    bool no_progress = false;
    // sweep
    std::string request_rates, max_concurrencies;
    double slo_attainment = 0.9;
};

void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    if (!f) raise(ErrorCode::Io, "{}: cannot write", path);
    f << text;
    if (!f) raise(ErrorCode::Io, "{}: write failed", path);
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        if (end > start) out.push_back(s.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

struct Prepared {
    std::unique_ptr<tokenizer::Tokenizer> tok;
    std::vector<bench::SampleRequest> samples;
    bench::MetricOptions metrics;
    bench::RunInfo info;
};

Prepared prepare(ServeBenchOptions& o) {
    Prepared p;
    if (!o.tokenizer.empty())
        p.tok = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_path(o.tokenizer));
    if (o.serve.api_key.empty())
        if (const char* k = std::getenv("OPENAI_API_KEY")) o.serve.api_key = k;
    o.serve.request_rate = bench::parse_rate(o.request_rate);
    o.serve.burstiness = o.burstiness == "inf" ? INFINITY : std::stod(o.burstiness);
    if (!(o.serve.burstiness > 0)) raise(ErrorCode::InvalidArgument, "--burstiness must be positive");
    o.serve.ready_check = !o.skip_ready_check;
    o.serve.progress = !o.no_progress && isatty(STDERR_FILENO);
    o.dataset.seed = o.serve.seed;
    p.samples = bench::sample_requests(o.dataset, p.tok.get());
    p.metrics.percentiles = bench::parse_percentiles(o.percentiles);
    p.metrics.percentile_metrics = split(o.percentile_metrics);
    for (const std::string& m : p.metrics.percentile_metrics)
        if (m != "ttft" && m != "tpot" && m != "itl" && m != "e2el")
            raise(ErrorCode::InvalidArgument, "--percentile-metrics: unknown '{}' (ttft, tpot, itl, e2el)", m);
    p.metrics.goodput = bench::parse_goodput(o.goodput);
    p.metrics.cost_per_hour = o.cost_per_hour;
    p.metrics.num_machines = o.num_gpus;
    if (o.num_gpus < 1) raise(ErrorCode::InvalidArgument, "--num-gpus must be >= 1");
    p.info.backend = bench::is_chat_endpoint(o.serve.endpoint) ? "openai-chat" : "openai";
    p.info.model_id = o.serve.model;
    p.info.tokenizer_id = o.tokenizer.empty() ? o.serve.model : o.tokenizer;
    p.info.endpoint = o.serve.endpoint;
    p.info.base_url = o.serve.base_url;
    p.info.dataset = o.dataset.name;
    p.info.request_rate = o.serve.request_rate;
    p.info.burstiness = o.serve.burstiness;
    p.info.max_concurrency = o.serve.max_concurrency;
    p.info.num_prompts = int(p.samples.size());
    return p;
}

void bench_serve(ServeBenchOptions& o) {
    Prepared p = prepare(o);
    std::printf("Traffic request rate: %s\nBurstiness factor: %g (%s)\nMaximum request concurrency: %s\n",
                o.request_rate.c_str(), o.serve.burstiness, o.serve.burstiness == 1 ? "Poisson process" : "Gamma distribution",
                o.serve.max_concurrency > 0 ? std::to_string(o.serve.max_concurrency).c_str() : "None");
    std::fflush(stdout);
    bench::ServeRun run = bench::run_serve(o.serve, p.samples);
    bench::ServeMetrics m = bench::compute_metrics(run, p.samples, p.tok.get(), p.metrics);
    std::fputs(bench::format_summary(p.info, run, m, p.metrics).c_str(), stdout);
    for (const bench::RequestResult& r : run.outputs)
        if (!r.success) {
            std::fprintf(stderr, "first error: %s\n", r.error.c_str());
            break;
        }
    if (!o.save_result.empty()) write_file(o.save_result, bench::result_json(p.info, run, m, p.metrics).dump(2) + "\n");
    if (!o.report.empty()) write_file(o.report, bench::serve_report_html(p.info, run, m, p.metrics));
}

void bench_sweep(ServeBenchOptions& o) {
    Prepared p = prepare(o);
    std::vector<double> rates;
    std::vector<int> concs;
    if (!o.request_rates.empty()) rates = bench::parse_rates(o.request_rates);
    if (!o.max_concurrencies.empty()) concs = bench::parse_concurrencies(o.max_concurrencies);
    std::printf("%-14s %10s %12s %12s %12s %12s %12s %8s\n", rates.empty() ? "concurrency" : "rate (req/s)", "req/s",
                "out tok/s", "P50 TTFT", "P99 TTFT", "P50 TPOT", "P99 TPOT", "failed");
    auto p99 = [](const bench::MetricSummary& s) -> double {
        for (const auto& [pp, v] : s.percentiles)
            if (pp == 99) return v;
        return NAN;
    };
    bench::MetricOptions mo = p.metrics;
    bool has99 = false;
    for (double q : mo.percentiles) has99 = has99 || q == 99;
    if (!has99) mo.percentiles.push_back(99);
    bench::SweepResult sweep = bench::run_sweep(
        o.serve, rates, concs, p.samples, p.tok.get(), mo, o.slo_attainment, [&](const bench::SweepPoint& pt) {
            const std::string lvl = rates.empty() ? std::to_string(pt.max_concurrency)
                                    : std::isinf(pt.request_rate) ? "inf" : fmt::format("{:g}", pt.request_rate);
            std::printf("%-14s %10.2f %12.1f %12.1f %12.1f %12.1f %12.1f %8d\n", lvl.c_str(),
                        pt.metrics.request_throughput, pt.metrics.output_throughput, pt.metrics.ttft.median,
                        p99(pt.metrics.ttft), pt.metrics.tpot.median, p99(pt.metrics.tpot), pt.metrics.failed);
            std::fflush(stdout);
        });
    if (!mo.goodput.empty()) {
        if (sweep.best >= 0) {
            const bench::SweepPoint& b = sweep.points[size_t(sweep.best)];
            std::printf("highest load meeting the SLOs (>= %.0f%% of requests): %s\n", 100 * o.slo_attainment,
                        rates.empty() ? std::to_string(b.max_concurrency).c_str()
                                      : (std::isinf(b.request_rate) ? std::string("inf")
                                                                    : fmt::format("{:g} req/s", b.request_rate)).c_str());
        } else {
            std::printf("no load level meets the SLOs (>= %.0f%% of requests)\n", 100 * o.slo_attainment);
        }
    }
    if (!o.save_result.empty()) write_file(o.save_result, bench::sweep_json(sweep, p.info, mo).dump(2) + "\n");
    if (!o.report.empty()) write_file(o.report, bench::sweep_report_html(sweep, p.info, mo));
}

void add_serve_options(CLI::App* cmd, const std::shared_ptr<ServeBenchOptions>& o, bool sweep) {
    cmd->add_option("--base-url", o->serve.base_url, "Server URL (http://HOST:PORT)")->capture_default_str();
    cmd->add_option("--model", o->serve.model, "Model name sent in requests")->required();
    cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer (.gguf, tokenizer.json or folder) for prompts and counts");
    cmd->add_option("--endpoint", o->serve.endpoint, "/v1/completions or /v1/chat/completions")->capture_default_str();
    cmd->add_option("--api-key", o->serve.api_key, "Bearer token (default: $OPENAI_API_KEY)");
    cmd->add_option("--dataset,--dataset-name", o->dataset.name, "random or sharegpt")
        ->check(CLI::IsMember({"random", "sharegpt"}))->capture_default_str();
    cmd->add_option("--dataset-path", o->dataset.path, "ShareGPT JSON file");
    cmd->add_option("--num-prompts", o->dataset.num_prompts, "Requests to send")->capture_default_str();
    cmd->add_option("--random-input-len", o->dataset.random_input_len, "Random dataset: input tokens")->capture_default_str();
    cmd->add_option("--random-output-len", o->dataset.random_output_len, "Random dataset: output tokens")->capture_default_str();
    cmd->add_option("--random-range-ratio", o->dataset.random_range_ratio, "Random lengths in [L(1-r), L(1+r)]")
        ->capture_default_str();
    cmd->add_option("--sharegpt-output-len", o->dataset.sharegpt_output_len,
                    "ShareGPT: output tokens per request (default: the gpt turn's length)");
    cmd->add_option("--output-len-dist", o->dataset.output_len_dist, kOutputLenDistHelp)
        ->check(CLI::IsMember({"uniform", "exponential"}))->capture_default_str();
    if (!sweep) {
        cmd->add_option("--request-rate", o->request_rate, "Requests per second, or inf")->capture_default_str();
        cmd->add_option("--max-concurrency", o->serve.max_concurrency, "Requests in flight at most (0: no limit)");
    } else {
        cmd->add_option("--request-rates", o->request_rates, "Comma-separated rates, e.g. 1,2,4,inf");
        cmd->add_option("--max-concurrencies", o->max_concurrencies, "Comma-separated limits, e.g. 1,4,16");
        cmd->add_option("--request-rate", o->request_rate, "Rate when sweeping concurrencies")->capture_default_str();
        cmd->add_option("--max-concurrency", o->serve.max_concurrency, "Limit when sweeping rates (0: none)");
        cmd->add_option("--slo-attainment", o->slo_attainment, "Fraction of requests that must meet the SLOs")
            ->check(CLI::Range(0.0, 1.0))->capture_default_str();
    }
    cmd->add_option("--burstiness", o->burstiness, "Gamma shape of inter-arrival times (1: Poisson; inf: fixed)")
        ->capture_default_str();
    cmd->add_flag("--ignore-eos", o->serve.ignore_eos, "Send ignore_eos so every request makes its full length");
    cmd->add_option("--seed", o->serve.seed, "Seed of the dataset and the arrivals")->capture_default_str();
    cmd->add_option("--percentiles,--metric-percentiles", o->percentiles, "Percentiles, e.g. 50,90,95,99")
        ->capture_default_str();
    cmd->add_option("--percentile-metrics", o->percentile_metrics, "Metrics to report")->capture_default_str();
    cmd->add_option("--goodput", o->goodput, "SLOs in ms: ttft:MS tpot:MS e2el:MS")->expected(1, -1);
    cmd->add_option("--gpu-cost-per-hour", o->cost_per_hour, "$ per machine-hour (for $ per 1M tokens)");
    cmd->add_option("--num-gpus", o->num_gpus, "Machines (GPUs) the cost applies to")->capture_default_str();
    cmd->add_option("--save-result", o->save_result, "Write the JSON result here");
    cmd->add_option("--report", o->report, "Write a self-contained HTML report here");
    cmd->add_option("--request-timeout", o->serve.request_timeout_s, "Seconds per request before it fails")
        ->capture_default_str();
    cmd->add_flag("--skip-ready-check", o->skip_ready_check, "Do not send a test request first");
    cmd->add_flag("--disable-tqdm,--no-progress", o->no_progress, "No live progress line");
}

struct OfflineOptions {
    bench::OfflineConfig config;
    std::string async_scheduling;  // empty: not given, or given without a value (vLLM's flag form: on)
    const CLI::Option* async_scheduling_option = nullptr;  // its count tells a bare flag from no flag
    std::string scheduling = "continuous";
    std::string kv_cache_memory;
    std::string kv_cache_dtype = "auto";
    std::string device = "auto";
    std::string percentiles = "50,90,99";
    std::string save_result;
    int input_len = 0, output_len = 0;
};

size_t parse_size(const std::string& text) {
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(text, &pos);
    } catch (const std::exception&) {
        raise(ErrorCode::InvalidArgument, "--kv-cache-memory: '{}' is not a size", text);
    }
    const std::string unit = text.substr(pos);
    double mult = 1;
    if (unit == "KiB" || unit == "K") mult = 1024.0;
    else if (unit == "MiB" || unit == "M") mult = 1024.0 * 1024;
    else if (unit == "GiB" || unit == "G") mult = 1024.0 * 1024 * 1024;
    else if (!unit.empty() && unit != "B") raise(ErrorCode::InvalidArgument, "--kv-cache-memory: unknown unit '{}'", unit);
    if (!(v > 0)) raise(ErrorCode::InvalidArgument, "--kv-cache-memory must be positive");
    return size_t(v * mult);
}

void bench_offline(OfflineOptions& o) {
    bench::OfflineConfig& c = o.config;
    if (o.input_len > 0) c.dataset.random_input_len = o.input_len;
    // Random prompts draw their output length from [L(1-r), L(1+r)] like their input length; ShareGPT prompts get
    // --output-len when it is given, varied the same way when --random-range-ratio is set (for conversations
    // without a reply to take the length from).
    if (o.output_len > 0) {
        c.dataset.random_output_len = o.output_len;
        if (c.dataset.name != "random") {
            if (c.dataset.random_range_ratio > 0 || c.dataset.output_len_dist == "exponential")
                c.dataset.sharegpt_output_len = o.output_len;
            else c.output_len = o.output_len;
        }
    }
    if (!o.kv_cache_memory.empty()) c.engine.kv_cache_bytes = parse_size(o.kv_cache_memory);
    c.engine.kv_dtype = parse_kv_cache_dtype(o.kv_cache_dtype);
    c.engine.scheduling = o.scheduling == "static" ? engine::SchedulingPolicy::Static : engine::SchedulingPolicy::Continuous;
    c.engine.async_scheduling = parse_async_scheduling(
        o.async_scheduling, o.async_scheduling_option && o.async_scheduling_option->count() > 0);
    c.engine.validate();
    c.percentiles = bench::parse_percentiles(o.percentiles);
    c.progress = isatty(STDERR_FILENO);
    auto backend = make_backend(o.device, c.threads);
    bench::OfflineResult r = bench::run_offline(c, *backend);
    std::fputs(bench::format_offline(r).c_str(), stdout);
    if (!o.save_result.empty()) write_file(o.save_result, bench::offline_json(r, c).dump(2) + "\n");
}

}  // namespace

void register_bench_command(CLI::App& app) {
    CLI::App* bench = app.add_subcommand("bench", "Benchmarks: serve (HTTP, vLLM-compatible), sweep, offline");
    bench->require_subcommand(1);

    auto so = std::make_shared<ServeBenchOptions>();
    CLI::App* serve = bench->add_subcommand("serve", "Benchmark an OpenAI-compatible server (vLLM bench serve metrics)");
    add_serve_options(serve, so, false);
    serve->callback([so] { bench_serve(*so); });

    auto sw = std::make_shared<ServeBenchOptions>();
    CLI::App* sweep = bench->add_subcommand("sweep", "Serving benchmark over request rates or concurrencies");
    add_serve_options(sweep, sw, true);
    sweep->callback([sw] { bench_sweep(*sw); });

    auto oo = std::make_shared<OfflineOptions>();
    oo->config.dataset.num_prompts = 64;
    oo->config.dataset.random_input_len = 128;
    oo->config.dataset.random_output_len = 64;
    CLI::App* off = bench->add_subcommand("offline", "In-process engine throughput and latency (no HTTP)");
    off->add_option("-m,--model", oo->config.model, "GGUF file or Hugging Face folder (default: SmolLM2)");
    off->add_option("--input-len", oo->input_len, "Input tokens per request (random dataset; default 128)");
    off->add_option("--output-len", oo->output_len, "Output tokens per request (default 64)");
    off->add_option("--num-prompts", oo->config.dataset.num_prompts, "Requests")->capture_default_str();
    off->add_option("--dataset,--dataset-name", oo->config.dataset.name, "random or sharegpt")
        ->check(CLI::IsMember({"random", "sharegpt"}))->capture_default_str();
    off->add_option("--dataset-path", oo->config.dataset.path, "ShareGPT JSON file");
    off->add_option("--random-range-ratio", oo->config.dataset.random_range_ratio, "Random lengths in [L(1-r), L(1+r)]");
    off->add_option("--output-len-dist", oo->config.dataset.output_len_dist, kOutputLenDistHelp)
        ->check(CLI::IsMember({"uniform", "exponential"}))->capture_default_str();
    off->add_option("--seed", oo->config.dataset.seed, "Dataset seed")->capture_default_str();
    off->add_option("--max-num-seqs", oo->config.engine.max_num_seqs, "Sequences running at once")->capture_default_str();
    oo->config.engine.max_num_batched_tokens = 0;  // the engine picks the device's default
    off->add_option("--max-num-batched-tokens", oo->config.engine.max_num_batched_tokens,
                    "Tokens per engine step (default: 512 on the CPU, 8192 on a GPU)");
    off->add_option("--kv-cache-memory", oo->kv_cache_memory, "KV cache budget, e.g. 512MiB");
    off->add_option("--kv-cache-dtype", oo->kv_cache_dtype, kKvCacheDtypeHelp)->capture_default_str();
    off->add_flag("--enforce-eager", oo->config.enforce_eager, kEnforceEagerHelp);
    oo->async_scheduling_option =
        off->add_option("--async-scheduling", oo->async_scheduling, kAsyncSchedulingHelp)
            ->expected(0, 1)
            ->check(CLI::IsMember({"auto", "on", "off"}));
    off->add_option("--scheduling", oo->scheduling, "continuous or static")
        ->check(CLI::IsMember({"continuous", "static"}))->capture_default_str();
    off->add_flag("!--no-ignore-eos", oo->config.ignore_eos, "Stop at EOS (default: generate the full length)");
    off->add_option("-t,--threads", oo->config.threads, "CPU threads (default: one per core)");
    off->add_option("--device", oo->device, kDeviceHelp);
    off->add_option("--gpu-memory-utilization", oo->config.engine.gpu_memory_utilization,
                    "GPU: share of device memory for weights, activations and the KV cache")
        ->check(CLI::Range(0.05, 1.0))->capture_default_str();
    off->add_option("--percentiles", oo->percentiles, "Percentiles")->capture_default_str();
    off->add_option("--save-result", oo->save_result, "Write the JSON result here");
    off->callback([oo] { bench_offline(*oo); });
}

}  // namespace osprey::cli

#endif  // OSPREY_WITH_BENCH
