#include "bench/sweep.h"

#include <cmath>

#include <fmt/format.h>

#include "bench/html_report.h"
#include "core/error.h"

namespace osprey::bench {

using nlohmann::json;

double parse_rate(const std::string& text) {
    if (text == "inf" || text == "Inf" || text == "INF") return INFINITY;
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(text, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != text.size() || !(v > 0)) raise(ErrorCode::InvalidArgument, "request rate '{}' must be > 0 or inf", text);
    return v;
}

namespace {
std::vector<std::string> split_commas(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t end = text.find(',', start);
        if (end == std::string::npos) end = text.size();
        if (end > start) out.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    return out;
}
}  // namespace

std::vector<double> parse_rates(const std::string& text) {
    std::vector<double> out;
    for (const std::string& s : split_commas(text)) out.push_back(parse_rate(s));
    if (out.empty()) raise(ErrorCode::InvalidArgument, "--request-rates: no rate in '{}'", text);
    return out;
}

std::vector<int> parse_concurrencies(const std::string& text) {
    std::vector<int> out;
    for (const std::string& s : split_commas(text)) {
        size_t pos = 0;
        int v = 0;
        try {
            v = std::stoi(s, &pos);
        } catch (const std::exception&) {
            pos = 0;
        }
        if (pos != s.size() || v < 1) raise(ErrorCode::InvalidArgument, "--max-concurrencies: '{}' must be >= 1", s);
        out.push_back(v);
    }
    if (out.empty()) raise(ErrorCode::InvalidArgument, "--max-concurrencies: no value in '{}'", text);
    return out;
}

SweepResult run_sweep(const ServeConfig& base, const std::vector<double>& rates, const std::vector<int>& concurrencies,
                      const std::vector<SampleRequest>& samples, const tokenizer::Tokenizer* tokenizer,
                      const MetricOptions& options, double slo_attainment,
                      const std::function<void(const SweepPoint&)>& on_point) {
    if (rates.empty() == concurrencies.empty())
        raise(ErrorCode::InvalidArgument, "bench sweep needs exactly one of --request-rates and --max-concurrencies");
    SweepResult sweep;
    sweep.load_kind = rates.empty() ? "max_concurrency" : "request_rate";
    const size_t n = rates.empty() ? concurrencies.size() : rates.size();
    for (size_t i = 0; i < n; ++i) {
        ServeConfig c = base;
        if (!rates.empty()) c.request_rate = rates[i];
        else c.max_concurrency = concurrencies[i];
        c.ready_check = base.ready_check && i == 0;
        SweepPoint p;
        p.request_rate = c.request_rate;
        p.max_concurrency = c.max_concurrency;
        p.run = run_serve(c, samples);
        p.metrics = compute_metrics(p.run, samples, tokenizer, options);
        p.slo_attainment = double(p.metrics.good) / double(samples.size());
        p.meets_slo = !options.goodput.empty() && p.slo_attainment >= slo_attainment;
        if (p.meets_slo) sweep.best = int(i);  // levels are run in the given (ascending) order
        if (on_point) on_point(p);
        sweep.points.push_back(std::move(p));
    }
    return sweep;
}

json sweep_json(const SweepResult& sweep, const RunInfo& info, const MetricOptions& options) {
    json j;
    j["load_kind"] = sweep.load_kind;
    j["points"] = json::array();
    for (const SweepPoint& p : sweep.points) {
        RunInfo ri = info;
        ri.request_rate = p.request_rate;
        ri.max_concurrency = p.max_concurrency;
        json r = result_json(ri, p.run, p.metrics, options);
        r["slo_attainment"] = p.slo_attainment;
        r["meets_slo"] = p.meets_slo;
        j["points"].push_back(std::move(r));
    }
    j["goodput_slos_ms"] = options.goodput;
    j["best_index"] = sweep.best >= 0 ? json(sweep.best) : json(nullptr);
    if (sweep.best >= 0) {
        const SweepPoint& b = sweep.points[size_t(sweep.best)];
        if (sweep.load_kind == "request_rate")
            j["best_request_rate"] = std::isinf(b.request_rate) ? json("inf") : json(b.request_rate);
        else
            j["best_max_concurrency"] = b.max_concurrency;
    }
    return j;
}

namespace {

std::string rate_text(double r) { return std::isinf(r) ? "inf" : fmt::format("{:g}", r); }

double p99_of(const MetricSummary& s) {
    for (const auto& [p, v] : s.percentiles)
        if (p == 99) return v;
    return NAN;
}

std::vector<std::string> summary_row(const std::string& name, const MetricSummary& s) {
    std::vector<std::string> row = {name, fmt::format("{:.2f}", s.mean), fmt::format("{:.2f}", s.median),
                                    fmt::format("{:.2f}", s.std)};
    for (const auto& [p, v] : s.percentiles) row.push_back(fmt::format("{:.2f}", v));
    return row;
}

std::string subtitle_of(const RunInfo& info) {
    return fmt::format("model {} · {} {} · dataset {} · {} prompts", info.model_id, info.base_url, info.endpoint,
                       info.dataset, info.num_prompts);
}

}  // namespace

std::string serve_report_html(const RunInfo& info, const ServeRun& run, const ServeMetrics& m, const MetricOptions& o) {
    ReportTable totals{"Run", {"metric", "value"}, {}};
    auto add = [&](const std::string& k, const std::string& v) { totals.rows.push_back({k, v}); };
    add("request rate (req/s)", rate_text(info.request_rate));
    add("burstiness", fmt::format("{:g}", info.burstiness));
    add("max concurrency", info.max_concurrency > 0 ? std::to_string(info.max_concurrency) : "none");
    add("successful requests", std::to_string(m.completed));
    add("failed requests", std::to_string(m.failed));
    add("duration (s)", fmt::format("{:.2f}", run.duration));
    add("total input tokens", std::to_string(m.total_input));
    add("total output tokens", std::to_string(m.total_output));
    add("request throughput (req/s)", fmt::format("{:.2f}", m.request_throughput));
    if (!o.goodput.empty()) add("request goodput (req/s)", fmt::format("{:.2f}", m.request_goodput));
    add("output token throughput (tok/s)", fmt::format("{:.2f}", m.output_throughput));
    add("total token throughput (tok/s)", fmt::format("{:.2f}", m.total_token_throughput));
    if (o.cost_per_hour > 0) {
        add("cost per 1M output tokens ($)", fmt::format("{:.4f}", m.cost_per_1m_output_tokens));
        add("cost per 1M total tokens ($)", fmt::format("{:.4f}", m.cost_per_1m_total_tokens));
    }
    ReportTable lat{"Latency (ms)", {"metric", "mean", "median", "std"}, {}};
    for (double p : o.percentiles) lat.header.push_back("P" + percentile_word(p));
    lat.rows = {summary_row("TTFT", m.ttft), summary_row("TPOT", m.tpot), summary_row("ITL", m.itl),
                summary_row("E2EL", m.e2el)};
    auto ms = [](const std::vector<double>& s) {
        std::vector<double> v;
        for (double x : s) v.push_back(x * 1000);
        return v;
    };
    std::vector<ReportChart> charts;
    charts.push_back({"cdf-ttft", "Time to first token (CDF)", "TTFT (ms)", "fraction of requests",
                      {cdf_series("ttft", "TTFT", ms(m.ttfts))}, true});
    charts.push_back({"cdf-tpot", "Time per output token (CDF)", "TPOT (ms)", "fraction of requests",
                      {cdf_series("tpot", "TPOT", ms(m.tpots))}, true});
    charts.push_back({"cdf-e2el", "End-to-end latency (CDF)", "E2E latency (ms)", "fraction of requests",
                      {cdf_series("e2el", "E2EL", ms(m.e2els))}, true});
    charts.push_back({"cdf-itl", "Inter-token latency (CDF)", "ITL (ms)", "fraction of gaps",
                      {cdf_series("itl", "ITL", ms(m.itls))}, true});
    return render_html_report("osprey bench serve", subtitle_of(info), {totals, lat}, charts);
}

std::string sweep_report_html(const SweepResult& sweep, const RunInfo& info, const MetricOptions& o) {
    const bool by_rate = sweep.load_kind == "request_rate";
    ReportTable t{"Sweep", {by_rate ? "request rate (req/s)" : "max concurrency", "req/s", "output tok/s",
                            "P50 TTFT (ms)", "P99 TTFT (ms)", "P50 TPOT (ms)", "P99 TPOT (ms)", "P99 E2EL (ms)",
                            "failed", "SLO attainment", "meets SLOs"}, {}};
    // x: the offered load; an infinite rate is drawn at the measured request throughput.
    ReportSeries thr{"throughput-output", "output tok/s", {}, {}, true};
    ReportSeries req{"throughput-requests", "requests/s x 100", {}, {}, true};
    ReportSeries ttft{"p99-ttft", "P99 TTFT", {}, {}, true}, tpot{"p99-tpot", "P99 TPOT", {}, {}, true},
        e2el{"p99-e2el", "P99 E2EL", {}, {}, true};
    for (size_t i = 0; i < sweep.points.size(); ++i) {
        const SweepPoint& p = sweep.points[i];
        const ServeMetrics& m = p.metrics;
        const double x = by_rate ? (std::isinf(p.request_rate) ? m.request_throughput : p.request_rate)
                                 : double(p.max_concurrency);
        t.rows.push_back({by_rate ? rate_text(p.request_rate) : std::to_string(p.max_concurrency),
                          fmt::format("{:.2f}", m.request_throughput), fmt::format("{:.1f}", m.output_throughput),
                          fmt::format("{:.1f}", m.ttft.median), fmt::format("{:.1f}", p99_of(m.ttft)),
                          fmt::format("{:.1f}", m.tpot.median), fmt::format("{:.1f}", p99_of(m.tpot)),
                          fmt::format("{:.1f}", p99_of(m.e2el)), std::to_string(m.failed),
                          o.goodput.empty() ? "-" : fmt::format("{:.1f}%", 100 * p.slo_attainment),
                          o.goodput.empty() ? "-" : (int(i) == sweep.best ? "yes (best)" : p.meets_slo ? "yes" : "no")});
        thr.x.push_back(x), thr.y.push_back(m.output_throughput);
        req.x.push_back(x), req.y.push_back(m.request_throughput * 100);
        ttft.x.push_back(x), ttft.y.push_back(p99_of(m.ttft));
        tpot.x.push_back(x), tpot.y.push_back(p99_of(m.tpot));
        e2el.x.push_back(x), e2el.y.push_back(p99_of(m.e2el));
    }
    const std::string xl = by_rate ? "request rate (req/s)" : "max concurrency";
    std::vector<ReportChart> charts;
    charts.push_back({"sweep-throughput", "Throughput against load", xl, "tokens/s", {thr, req}, false});
    charts.push_back({"sweep-latency", "P99 latency against load", xl, "ms", {ttft, tpot, e2el}, false});
    for (size_t i = 0; i < sweep.points.size(); ++i) {
        const SweepPoint& p = sweep.points[i];
        std::vector<double> v;
        for (double x : p.metrics.ttfts) v.push_back(x * 1000);
        const std::string lvl = by_rate ? rate_text(p.request_rate) : std::to_string(p.max_concurrency);
        if (i == 0) charts.push_back({"sweep-cdf-ttft", "TTFT CDF per load level", "TTFT (ms)", "fraction", {}, true});
        charts.back().series.push_back(cdf_series("ttft-" + std::to_string(i), "load " + lvl, v));
    }
    std::string sub = subtitle_of(info);
    if (!o.goodput.empty()) {
        sub += " · SLOs";
        for (const auto& [k, v] : o.goodput) sub += fmt::format(" {}<={:g}ms", k, v);
        sub += sweep.best >= 0 ? " · highest load meeting them: " +
                                     (by_rate ? rate_text(sweep.points[size_t(sweep.best)].request_rate)
                                              : std::to_string(sweep.points[size_t(sweep.best)].max_concurrency))
                               : " · no load level meets them";
    }
    return render_html_report("osprey bench sweep", sub, {t}, charts);
}

}  // namespace osprey::bench
