#include "bench/serve_metrics.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace osprey::bench {

using nlohmann::json;

std::map<std::string, double> parse_goodput(const std::vector<std::string>& pairs) {
    std::map<std::string, double> out;
    for (const std::string& p : pairs) {
        const size_t colon = p.find(':');
        if (colon == std::string::npos)
            raise(ErrorCode::InvalidArgument, "--goodput '{}': expected KEY:MS (ttft:500 tpot:50 e2el:10000)", p);
        const std::string key = p.substr(0, colon), value = p.substr(colon + 1);
        if (key != "ttft" && key != "tpot" && key != "e2el")
            raise(ErrorCode::InvalidArgument, "--goodput '{}': the metric must be ttft, tpot or e2el", p);
        size_t pos = 0;
        double v = -1;
        try {
            v = std::stod(value, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        if (pos != value.size() || !(v >= 0))
            raise(ErrorCode::InvalidArgument, "--goodput '{}': the SLO must be a non-negative number of ms", p);
        out[key] = v;
    }
    return out;
}

double cost_per_million(double cost_per_hour, int num_machines, double tokens_per_s) {
    if (!(cost_per_hour > 0) || !(tokens_per_s > 0)) return 0;
    return cost_per_hour * double(num_machines) / (tokens_per_s * 3600.0) * 1e6;
}

ServeMetrics compute_metrics(const ServeRun& run, const std::vector<SampleRequest>& samples,
                             const tokenizer::Tokenizer* tokenizer, const MetricOptions& o) {
    ServeMetrics m;
    std::vector<double> all_tpots;
    int& good = m.good;
    for (size_t i = 0; i < run.outputs.size(); ++i) {
        const RequestResult& r = run.outputs[i];
        int in_len = samples[i].prompt_len >= 0 ? samples[i].prompt_len : std::max(0, r.usage_prompt_tokens);
        m.input_lens.push_back(in_len);
        if (!r.success) {
            m.output_lens.push_back(0);
            ++m.failed;
            continue;
        }
        int out_len = r.output_tokens;
        if (out_len <= 0)
            out_len = tokenizer ? int(tokenizer->encode(r.generated_text, false, false).size()) : r.n_chunks;
        m.output_lens.push_back(out_len);
        m.total_input += in_len;
        double tpot = 0;
        if (out_len > 1) {
            tpot = (r.latency - r.ttft) / double(out_len - 1);
            m.tpots.push_back(tpot);
        }
        all_tpots.push_back(tpot);
        m.itls.insert(m.itls.end(), r.itl.begin(), r.itl.end());
        m.ttfts.push_back(r.ttft);
        m.e2els.push_back(r.latency);
        ++m.completed;
        bool ok = true;
        if (auto it = o.goodput.find("ttft"); it != o.goodput.end()) ok = ok && r.ttft <= it->second / 1000.0;
        if (auto it = o.goodput.find("tpot"); it != o.goodput.end()) ok = ok && tpot <= it->second / 1000.0;
        if (auto it = o.goodput.find("e2el"); it != o.goodput.end()) ok = ok && r.latency <= it->second / 1000.0;
        good += ok ? 1 : 0;
    }
    for (int v : m.output_lens) m.total_output += v;
    const double dur = run.duration > 0 ? run.duration : 1e-9;
    m.request_throughput = m.completed / dur;
    m.request_goodput = good / dur;
    m.output_throughput = double(m.total_output) / dur;
    m.total_token_throughput = double(m.total_input + m.total_output) / dur;
    m.ttft = summarize(m.ttfts, o.percentiles, 1000);
    m.tpot = summarize(m.tpots, o.percentiles, 1000);
    m.itl = summarize(m.itls, o.percentiles, 1000);
    m.e2el = summarize(m.e2els, o.percentiles, 1000);

    // Peak output chunks per one-second bucket and the requests active in it (vLLM's max_output_tokens_per_s).
    double t0 = INFINITY, t1 = -INFINITY;
    for (const RequestResult& r : run.outputs)
        if (r.success) t0 = std::min(t0, r.start_time), t1 = std::max(t1, r.start_time + r.latency);
    if (std::isfinite(t0)) {
        const size_t n_buckets = size_t(std::ceil(t1 - t0)) + 1;
        std::vector<double> tokens(n_buckets, 0), active(n_buckets, 0);
        for (const RequestResult& r : run.outputs) {
            if (!r.success) continue;
            double t = r.start_time + r.ttft;
            auto put = [&](double when) {
                const double b = std::floor(when - t0);
                if (b >= 0 && size_t(b) < n_buckets) tokens[size_t(b)] += 1;
            };
            put(t);
            for (double g : r.itl) put(t += g);
            const size_t a = size_t(r.start_time - t0), z = size_t(r.start_time + r.latency - t0);
            for (size_t s = a; s <= z && s < n_buckets; ++s) active[s] += 1;
        }
        m.max_output_tokens_per_s = *std::max_element(tokens.begin(), tokens.end());
        m.max_concurrent_requests = int(*std::max_element(active.begin(), active.end()));
    }
    m.cost_per_1m_output_tokens = cost_per_million(o.cost_per_hour, o.num_machines, m.output_throughput);
    m.cost_per_1m_total_tokens = cost_per_million(o.cost_per_hour, o.num_machines, m.total_token_throughput);
    return m;
}

namespace {

std::string now_date() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
    return buf;
}

const MetricSummary& summary_of(const ServeMetrics& m, const std::string& name) {
    if (name == "ttft") return m.ttft;
    if (name == "tpot") return m.tpot;
    if (name == "itl") return m.itl;
    return m.e2el;
}

}  // namespace

json result_json(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o) {
    json j;
    j["date"] = now_date();
    j["backend"] = info.backend;
    j["endpoint_type"] = info.backend;
    j["endpoint"] = info.endpoint;
    j["base_url"] = info.base_url;
    j["dataset_name"] = info.dataset;
    j["model_id"] = info.model_id;
    j["tokenizer_id"] = info.tokenizer_id;
    j["num_prompts"] = info.num_prompts;
    if (std::isinf(info.request_rate)) j["request_rate"] = "inf";
    else j["request_rate"] = info.request_rate;
    if (std::isinf(info.burstiness)) j["burstiness"] = "inf";
    else j["burstiness"] = info.burstiness;
    j["max_concurrency"] = info.max_concurrency > 0 ? json(info.max_concurrency) : json(nullptr);
    j["duration"] = run.duration;
    j["completed"] = m.completed;
    j["failed"] = m.failed;
    j["total_input_tokens"] = m.total_input;
    j["total_output_tokens"] = m.total_output;
    j["request_throughput"] = m.request_throughput;
    j["request_goodput"] = o.goodput.empty() ? json(nullptr) : json(m.request_goodput);
    j["output_throughput"] = m.output_throughput;
    j["total_token_throughput"] = m.total_token_throughput;
    j["input_lens"] = m.input_lens;
    j["output_lens"] = m.output_lens;
    json ttfts = json::array(), itls = json::array(), texts = json::array(), errors = json::array(),
         e2els = json::array(), starts = json::array();
    for (const RequestResult& r : run.outputs) {
        ttfts.push_back(r.ttft);
        itls.push_back(r.itl);
        texts.push_back(r.generated_text);
        errors.push_back(r.error);
        e2els.push_back(r.latency);
        starts.push_back(r.start_time);
    }
    j["ttfts"] = ttfts;
    j["itls"] = itls;
    j["generated_texts"] = texts;
    j["errors"] = errors;
    j["e2els"] = e2els;
    j["start_times"] = starts;
    j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
    j["max_concurrent_requests"] = m.max_concurrent_requests;
    for (const std::string& name : o.percentile_metrics) {
        const MetricSummary& s = summary_of(m, name);
        j["mean_" + name + "_ms"] = s.mean;
        j["median_" + name + "_ms"] = s.median;
        j["std_" + name + "_ms"] = s.std;
        for (const auto& [p, v] : s.percentiles) j["p" + percentile_word(p) + "_" + name + "_ms"] = v;
    }
    j["goodput_slos_ms"] = o.goodput;
    j["cost_per_hour"] = o.cost_per_hour;
    j["num_gpus"] = o.num_machines;
    j["cost_per_1m_output_tokens"] = o.cost_per_hour > 0 ? json(m.cost_per_1m_output_tokens) : json(nullptr);
    j["cost_per_1m_total_tokens"] = o.cost_per_hour > 0 ? json(m.cost_per_1m_total_tokens) : json(nullptr);
    return j;
}

std::string format_summary(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o) {
    std::string s;
    auto line = [&](const std::string& label, double v) { s += fmt::format("{:<40} {:<10.2f}\n", label, v); };
    auto count = [&](const std::string& label, int64_t v) { s += fmt::format("{:<40} {:<10}\n", label, v); };
    s += fmt::format("{:=^50}\n", " Serving Benchmark Result ");
    count("Successful requests:", m.completed);
    count("Failed requests:", m.failed);
    if (info.max_concurrency > 0) count("Maximum request concurrency:", info.max_concurrency);
    line("Benchmark duration (s):", run.duration);
    count("Total input tokens:", m.total_input);
    count("Total generated tokens:", m.total_output);
    line("Request throughput (req/s):", m.request_throughput);
    if (!o.goodput.empty()) line("Request goodput (req/s):", m.request_goodput);
    line("Output token throughput (tok/s):", m.output_throughput);
    line("Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
    line("Peak concurrent requests:", m.max_concurrent_requests);
    line("Total token throughput (tok/s):", m.total_token_throughput);
    if (o.cost_per_hour > 0) {
        line("Cost per 1M output tokens ($):", m.cost_per_1m_output_tokens);
        line("Cost per 1M total tokens ($):", m.cost_per_1m_total_tokens);
    }
    const std::pair<const char*, const char*> headers[] = {{"ttft", "Time to First Token"},
                                                           {"tpot", "Time per Output Token (excl. 1st token)"},
                                                           {"itl", "Inter-token Latency"},
                                                           {"e2el", "End-to-end Latency"}};
    for (const auto& [name, header] : headers) {
        if (std::find(o.percentile_metrics.begin(), o.percentile_metrics.end(), name) == o.percentile_metrics.end())
            continue;
        std::string upper = name;
        for (char& ch : upper) ch = char(std::toupper(ch));
        const MetricSummary& ms = summary_of(m, name);
        s += fmt::format("{:-^50}\n", header);
        line("Mean " + upper + " (ms):", ms.mean);
        line("Median " + upper + " (ms):", ms.median);
        for (const auto& [p, v] : ms.percentiles) line("P" + percentile_word(p) + " " + upper + " (ms):", v);
    }
    s += std::string(50, '=') + "\n";
    return s;
}

}  // namespace osprey::bench
