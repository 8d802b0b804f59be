#include "bench/html_report.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace osprey::bench {

std::string html_escape(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

ReportSeries cdf_series(std::string id, std::string label, std::vector<double> values) {
    ReportSeries s;
    s.id = std::move(id);
    s.label = std::move(label);
    std::sort(values.begin(), values.end());
    const double n = double(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
        s.x.push_back(values[i]);
        s.y.push_back(double(i + 1) / n);
    }
    return s;
}

namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
constexpr double kW = 640, kH = 360, kL = 70, kR = 20, kT = 36, kB = 50;

// A "nice" axis maximum: 1, 2, 2.5 or 5 times a power of ten.
double nice_max(double v) {
    if (!(v > 0) || !std::isfinite(v)) return 1;
    const double p = std::pow(10.0, std::floor(std::log10(v)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * p >= v) return m * p;
    return 10 * p;
}

std::string fmt_num(double v) {
    if (v == 0) return "0";
    if (std::fabs(v) >= 100) return fmt::format("{:.0f}", v);
    if (std::fabs(v) >= 1) return fmt::format("{:.3g}", v);
    return fmt::format("{:.2g}", v);
}

std::string render_chart(const ReportChart& c, size_t color_base) {
    double xmax = 0, ymax = 0;
    for (const ReportSeries& s : c.series) {
        for (double v : s.x) if (std::isfinite(v)) xmax = std::max(xmax, v);
        for (double v : s.y) if (std::isfinite(v)) ymax = std::max(ymax, v);
    }
    xmax = nice_max(xmax);
    ymax = c.step ? 1.0 : nice_max(ymax);
    const double pw = kW - kL - kR, ph = kH - kT - kB;
    auto X = [&](double v) { return kL + pw * std::clamp(v / xmax, 0.0, 1.0); };
    auto Y = [&](double v) { return kT + ph * (1 - std::clamp(v / ymax, 0.0, 1.0)); };
    std::string o = fmt::format(
        "<figure><svg id=\"chart-{}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
        "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
        html_escape(c.id), kW, kH, kW, kH, html_escape(c.title));
    o += fmt::format("<text x=\"{}\" y=\"20\" class=\"title\">{}</text>\n", kW / 2, html_escape(c.title));
    for (int i = 0; i <= 5; ++i) {
        const double fx = xmax * i / 5, fy = ymax * i / 5;
        o += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\"/>", X(fx), kT, X(fx), kT + ph);
        o += fmt::format("<line class=\"grid\" x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\"/>", kL, Y(fy), kL + pw, Y(fy));
        o += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", X(fx), kT + ph + 16, fmt_num(fx));
        o += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", kL - 6, Y(fy) + 4, fmt_num(fy));
    }
    o += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n", kL, kT, pw, ph);
    o += fmt::format("<text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", kL + pw / 2, kH - 10,
                     html_escape(c.x_label));
    o += fmt::format("<text class=\"label\" x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{}</text>\n",
                     kT + ph / 2, kT + ph / 2, html_escape(c.y_label));
    for (size_t k = 0; k < c.series.size(); ++k) {
        const ReportSeries& s = c.series[k];
        const char* color = kColors[(color_base + k) % std::size(kColors)];
        std::string d;
        double prev_y = 0;
        for (size_t i = 0; i < s.x.size(); ++i) {
            const double x = X(s.x[i]), y = Y(s.y[i]);
            if (i == 0) {
                d += c.step ? fmt::format("M{:.2f},{:.2f} L{:.2f},{:.2f}", x, Y(0), x, y) : fmt::format("M{:.2f},{:.2f}", x, y);
            } else {
                d += c.step ? fmt::format(" L{:.2f},{:.2f} L{:.2f},{:.2f}", x, prev_y, x, y) : fmt::format(" L{:.2f},{:.2f}", x, y);
            }
            prev_y = y;
        }
        o += fmt::format("<path id=\"series-{}\" class=\"series\" data-points=\"{}\" fill=\"none\" stroke=\"{}\" "
                         "stroke-width=\"2\" d=\"{}\"><title>{}</title></path>\n",
                         html_escape(s.id), s.x.size(), color, d, html_escape(s.label));
        if (s.markers)
            for (size_t i = 0; i < s.x.size(); ++i)
                o += fmt::format("<circle class=\"point\" data-series=\"{}\" cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"3.5\" "
                                 "fill=\"{}\"><title>{}: ({}, {})</title></circle>\n",
                                 html_escape(s.id), X(s.x[i]), Y(s.y[i]), color, html_escape(s.label),
                                 fmt_num(s.x[i]), fmt_num(s.y[i]));
        const double ly = kT + 14 + 16 * double(k);
        o += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>"
                         "<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>\n",
                         kL + pw - 150, ly, kL + pw - 130, ly, color, kL + pw - 125, ly + 4, html_escape(s.label));
    }
    o += "</svg></figure>\n";
    return o;
}

}  // namespace

std::string render_html_report(const std::string& title, const std::string& subtitle,
                               const std::vector<ReportTable>& tables, const std::vector<ReportChart>& charts) {
    std::string o = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + html_escape(title) +
                    "</title>\n<style>\n"
                    "body{font-family:system-ui,sans-serif;margin:24px;color:#222}\n"
                    "table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 10px;"
                    "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}\n"
                    "figure{display:inline-block;margin:8px}svg .grid{stroke:#e5e5e5}svg .frame{fill:none;"
                    "stroke:#888}svg text{font-size:11px;fill:#333}svg .title{font-size:14px;text-anchor:middle;"
                    "font-weight:600}svg .label{font-size:12px}\n"
                    "</style></head><body>\n<h1>" + html_escape(title) + "</h1>\n<p>" + html_escape(subtitle) + "</p>\n";
    for (const ReportTable& t : tables) {
        o += "<h2>" + html_escape(t.title) + "</h2>\n<table><tr>";
        for (const std::string& h : t.header) o += "<th>" + html_escape(h) + "</th>";
        o += "</tr>\n";
        for (const auto& row : t.rows) {
            o += "<tr>";
            for (const std::string& cell : row) o += "<td>" + html_escape(cell) + "</td>";
            o += "</tr>\n";
        }
        o += "</table>\n";
    }
    o += "<h2>Charts</h2>\n";
    size_t color = 0;
    for (const ReportChart& c : charts) {
        o += render_chart(c, color);
        color += c.series.size();
    }
    o += "</body></html>\n";
    return o;
}

}  // namespace osprey::bench
