#include "bench/offline_bench.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>

#include <fmt/format.h>

#include "backend/backend.h"
#include "core/error.h"
#include "engine/model_loader.h"
#include "tokenizer/tokenizer.h"

namespace osprey::bench {

namespace {

using SteadyClock = std::chrono::steady_clock;

struct Tracker {
    std::mutex mu;
    std::condition_variable cv;
    int n_left = 0;
    struct Req {
        SteadyClock::time_point first, last;
        bool got_first = false;
        int n_tokens = 0;
        bool failed = false;
    };
    std::vector<Req> reqs;
};

}  // namespace

OfflineResult run_offline(const OfflineConfig& c, backend::Backend& be) {
    const std::string path = c.model.empty() ? engine::default_model_path() : c.model;
    engine::LoadOptions lo;
    lo.enforce_eager = c.enforce_eager;
    engine::LoadedModel m = engine::load_model(path, be, lo);
    if (!m.tokenizer) raise(ErrorCode::NotFound, "{}: the model has no tokenizer", path);
    std::vector<SampleRequest> samples = sample_requests(c.dataset, m.tokenizer.get());

    OfflineResult r;
    r.model = path;
    r.load_seconds = m.load_seconds;
    r.scheduling = c.engine.scheduling == engine::SchedulingPolicy::Static ? "static" : "continuous";
    r.num_requests = int(samples.size());
    engine::Engine eng(*m.model, *m.tokenizer, c.engine);

    Tracker t;
    t.reqs.resize(samples.size());
    t.n_left = int(samples.size());
    std::vector<engine::GenerationRequest> requests;
    for (size_t i = 0; i < samples.size(); ++i) {
        engine::GenerationRequest g;
        g.request_id = "bench-" + std::to_string(i);
        if (m.tokenizer->add_bos() && m.tokenizer->bos_id() >= 0) g.prompt.push_back(m.tokenizer->bos_id());
        g.prompt.insert(g.prompt.end(), samples[i].prompt_ids.begin(), samples[i].prompt_ids.end());
        g.params.temperature = 0;
        g.params.max_tokens = c.output_len > 0 ? c.output_len : samples[i].expected_output_len;
        g.params.ignore_eos = c.ignore_eos;
        r.prompt_tokens += int64_t(g.prompt.size());
        requests.push_back(std::move(g));
    }
    const auto start = SteadyClock::now();
    for (size_t i = 0; i < requests.size(); ++i) {
        eng.submit(std::move(requests[i]), [&t, i](const engine::RequestOutput& out) {
            const auto now = SteadyClock::now();
            std::lock_guard<std::mutex> lock(t.mu);
            Tracker::Req& q = t.reqs[i];
            if (!out.token_ids.empty()) {
                if (!q.got_first) q.got_first = true, q.first = now;
                q.n_tokens += int(out.token_ids.size());
                q.last = now;
            }
            if (out.finished) {
                q.failed = out.finish_reason == engine::FinishReason::Error ||
                           out.finish_reason == engine::FinishReason::Abort;
                if (out.n_completion_tokens > 0) q.n_tokens = out.n_completion_tokens;
                if (--t.n_left == 0) t.cv.notify_all();
            }
        });
    }
    {
        std::unique_lock<std::mutex> lock(t.mu);
        while (t.n_left > 0) {
            t.cv.wait_for(lock, std::chrono::milliseconds(250));
            if (c.progress) {
                std::fprintf(stderr, "\r\033[K[bench offline] %d/%d done, %.1f s", r.num_requests - t.n_left,
                             r.num_requests, std::chrono::duration<double>(SteadyClock::now() - start).count());
                std::fflush(stderr);
            }
        }
    }
    r.elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
    if (c.progress) std::fprintf(stderr, "\r\033[K");
    r.stats = eng.stats();
    r.max_num_batched_tokens = eng.config().max_num_batched_tokens;
    for (const Tracker::Req& q : t.reqs) {
        if (q.failed || !q.got_first) {
            ++r.failed;
            continue;
        }
        r.output_tokens += q.n_tokens;
        const double ttft = std::chrono::duration<double>(q.first - start).count();
        const double e2e = std::chrono::duration<double>(q.last - start).count();
        r.ttfts.push_back(ttft);
        r.e2els.push_back(e2e);
        if (q.n_tokens > 1) r.tpots.push_back((e2e - ttft) / double(q.n_tokens - 1));
    }
    r.requests_per_second = double(r.num_requests - r.failed) / r.elapsed;
    r.output_tokens_per_second = double(r.output_tokens) / r.elapsed;
    r.total_tokens_per_second = double(r.prompt_tokens + r.output_tokens) / r.elapsed;
    r.ttft = summarize(r.ttfts, c.percentiles, 1000);
    r.tpot = summarize(r.tpots, c.percentiles, 1000);
    r.e2el = summarize(r.e2els, c.percentiles, 1000);
    return r;
}

nlohmann::json offline_json(const OfflineResult& r, const OfflineConfig& c) {
    nlohmann::json j;
    j["model"] = r.model;
    j["scheduling"] = r.scheduling;
    j["dataset_name"] = c.dataset.name;
    j["output_len_dist"] = c.dataset.output_len_dist;
    j["async_scheduling"] = engine::async_scheduling_name(c.engine.async_scheduling);
    j["random_range_ratio"] = c.dataset.random_range_ratio;
    j["max_num_seqs"] = c.engine.max_num_seqs;
    j["max_num_batched_tokens"] = r.max_num_batched_tokens;
    j["kv_cache_bytes"] = c.engine.kv_cache_bytes;
    j["elapsed_time"] = r.elapsed;
    j["num_requests"] = r.num_requests;
    j["failed"] = r.failed;
    j["total_num_tokens"] = r.prompt_tokens + r.output_tokens;
    j["total_input_tokens"] = r.prompt_tokens;
    j["total_output_tokens"] = r.output_tokens;
    j["requests_per_second"] = r.requests_per_second;
    j["tokens_per_second"] = r.total_tokens_per_second;
    j["output_tokens_per_second"] = r.output_tokens_per_second;
    j["n_preemptions"] = r.stats.n_preemptions;
    j["n_steps"] = r.stats.n_steps;
    j["n_decode_steps"] = r.stats.n_decode_steps;
    j["decode_step_tokens"] = r.stats.decode_step_tokens;
    j["decode_step_seconds"] = r.stats.decode_step_seconds;
    j["decode_throughput"] = r.stats.decode_step_seconds > 0 ? double(r.stats.decode_step_tokens) / r.stats.decode_step_seconds : 0.0;
    // KV memory waste: allocated-but-unfilled token slots over allocated slots, summed over the engine's steps.
    j["kv_slots_allocated"] = r.stats.kv_slots_allocated;
    j["kv_slots_used"] = r.stats.kv_slots_used;
    j["kv_waste_ratio"] = r.stats.kv_slots_allocated > 0
                              ? 1.0 - double(r.stats.kv_slots_used) / double(r.stats.kv_slots_allocated)
                              : 0.0;
    const std::pair<const char*, const MetricSummary*> ms[] = {{"ttft", &r.ttft}, {"tpot", &r.tpot}, {"e2el", &r.e2el}};
    for (const auto& [name, s] : ms) {
        j[fmt::format("mean_{}_ms", name)] = s->mean;
        j[fmt::format("median_{}_ms", name)] = s->median;
        j[fmt::format("std_{}_ms", name)] = s->std;
        for (const auto& [p, v] : s->percentiles) j[fmt::format("p{}_{}_ms", percentile_word(p), name)] = v;
    }
    return j;
}

std::string format_offline(const OfflineResult& r) {
    std::string s = fmt::format("{:=^50}\n", " Offline Benchmark Result ");
    auto line = [&](const std::string& k, const std::string& v) { s += fmt::format("{:<40} {}\n", k, v); };
    line("Scheduling:", r.scheduling);
    line("Requests (failed):", fmt::format("{} ({})", r.num_requests, r.failed));
    line("Elapsed (s):", fmt::format("{:.2f}", r.elapsed));
    line("Input / output tokens:", fmt::format("{} / {}", r.prompt_tokens, r.output_tokens));
    line("Request throughput (req/s):", fmt::format("{:.2f}", r.requests_per_second));
    line("Output token throughput (tok/s):", fmt::format("{:.2f}", r.output_tokens_per_second));
    line("Total token throughput (tok/s):", fmt::format("{:.2f}", r.total_tokens_per_second));
    line("Preemptions / engine steps:", fmt::format("{} / {}", r.stats.n_preemptions, r.stats.n_steps));
    if (r.stats.n_decode_steps > 0)
        line("Decode-only steps (tok/s):",
             fmt::format("{} steps, mean batch {:.1f}, {:.2f} ms/step, {:.1f} tok/s", r.stats.n_decode_steps,
                         double(r.stats.decode_step_tokens) / double(r.stats.n_decode_steps),
                         1000.0 * r.stats.decode_step_seconds / double(r.stats.n_decode_steps),
                         double(r.stats.decode_step_tokens) / r.stats.decode_step_seconds));
    if (r.stats.kv_slots_allocated > 0)
        line("KV waste (unfilled / allocated slots):",
             fmt::format("{:.2f}%", 100.0 * (1.0 - double(r.stats.kv_slots_used) / double(r.stats.kv_slots_allocated))));
    const std::pair<const char*, const MetricSummary*> ms[] = {{"TTFT", &r.ttft}, {"TPOT", &r.tpot}, {"E2EL", &r.e2el}};
    for (const auto& [name, m] : ms) {
        std::string pct;
        for (const auto& [p, v] : m->percentiles) pct += fmt::format(" P{} {:.2f}", percentile_word(p), v);
        line(fmt::format("{} (ms):", name), fmt::format("mean {:.2f} median {:.2f}{}", m->mean, m->median, pct));
    }
    s += std::string(50, '=') + "\n";
    return s;
}

}  // namespace osprey::bench
