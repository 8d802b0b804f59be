// Self-contained HTML benchmark reports: inline SVG charts and inline CSS, no scripts, nothing fetched.
// Every chart is an <svg id="chart-ID">; every series in it a <path id="series-ID" class="series" data-points="N">
// (and, for load curves, one <circle class="point"> per point), so tests can check the DOM.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace osprey::bench {

struct ReportSeries {
    std::string id;     // unique in the page
    std::string label;  // legend text
    std::vector<double> x, y;
    bool markers = false;  // draw a circle per point
};

struct ReportChart {
    std::string id, title, x_label, y_label;
    std::vector<ReportSeries> series;
    bool step = false;  // draw as a step function (CDFs)
};

// An empirical CDF of `values` (any unit): x sorted values, y = i / n. An empty sample gives an empty series.
ReportSeries cdf_series(std::string id, std::string label, std::vector<double> values);

struct ReportTable {
    std::string title;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
};

std::string render_html_report(const std::string& title, const std::string& subtitle,
                               const std::vector<ReportTable>& tables, const std::vector<ReportChart>& charts);

// Escapes &, <, >, " and '.
std::string html_escape(const std::string& text);

}  // namespace osprey::bench
