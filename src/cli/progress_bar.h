// ProgressBar: a one-line progress bar on stderr, drawn only when the given stream is a terminal.
#pragma once

#include <cstdio>
#include <string>

namespace osprey::cli {

class ProgressBar {
  public:
    // enabled: usually isatty(STDOUT_FILENO) (the brief: progress bars when stdout is a terminal).
    ProgressBar(std::string label, bool enabled) : label_(std::move(label)), enabled_(enabled) {}
    ~ProgressBar() { finish(); }

    void update(double fraction) {
        if (!enabled_) return;
        const int pct = int(fraction * 100.0 + 0.5);
        if (pct == last_pct_) return;
        last_pct_ = pct;
        constexpr int kWidth = 30;
        const int filled = pct * kWidth / 100;
        std::string bar(size_t(filled), '#');
        bar.append(size_t(kWidth - filled), '.');
        std::fprintf(stderr, "\r%s [%s] %3d%%", label_.c_str(), bar.c_str(), pct);
        std::fflush(stderr);
    }

    void finish() {
        if (enabled_ && last_pct_ >= 0) std::fprintf(stderr, "\r\033[K");
        last_pct_ = -1;
        enabled_ = false;
    }

  private:
    std::string label_;
    bool enabled_;
    int last_pct_ = -1;
};

}  // namespace osprey::cli
