// OpProfiler: per-op GPU time of a CudaBackend, switched on with OSPREY_CUDA_PROFILE=1. Each op is bracketed by
// two CUDA events on the backend's stream (no host synchronisation in the op itself); the elapsed times are
// collected in batches and summed per op name, and the table goes to stderr when the backend is destroyed.
// Off (the default), a scope costs one branch.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace osprey::backend::cuda {

class OpProfiler {
  public:
    OpProfiler() {
        const char* env = std::getenv("OSPREY_CUDA_PROFILE");
        enabled_ = env && *env && std::string(env) != "0";
    }
    ~OpProfiler() {
        if (!enabled_) return;
        flush();
        for (auto& e : free_) cudaEventDestroy(e);
        std::vector<std::pair<std::string, Total>> rows(totals_.begin(), totals_.end());
        std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
        double all = 0;
        for (const auto& r : rows) all += r.second.ms;
        std::fprintf(stderr, "\n%-28s %10s %9s %11s %6s\n", "op (OSPREY_CUDA_PROFILE)", "calls", "total ms", "us/call", "%");
        for (const auto& [name, t] : rows)
            std::fprintf(stderr, "%-28s %10ld %9.1f %11.2f %6.1f\n", name.c_str(), t.calls, t.ms, 1000.0 * t.ms / double(t.calls),
                         100.0 * t.ms / all);
        std::fprintf(stderr, "%-28s %10s %9.1f\n", "all ops", "", all);
    }
    OpProfiler(const OpProfiler&) = delete;
    OpProfiler& operator=(const OpProfiler&) = delete;

    bool enabled() const { return enabled_; }

    class Scope {
      public:
        Scope(OpProfiler* p, const char* name, cudaStream_t s) : p_(p->enabled_ ? p : nullptr), name_(name), s_(s) {
            if (p_) a_ = p_->record(s_);
        }
        ~Scope() {
            if (p_) p_->pending_.push_back({name_, a_, p_->record(s_)});
            if (p_ && p_->pending_.size() >= 4096) p_->flush();
        }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

      private:
        OpProfiler* p_;
        const char* name_;
        cudaStream_t s_;
        cudaEvent_t a_ = nullptr;
    };

  private:
    struct Pending {
        std::string name;
        cudaEvent_t a, b;
    };
    struct Total {
        long calls = 0;
        double ms = 0;
    };

    cudaEvent_t record(cudaStream_t s) {
        cudaEvent_t e;
        if (free_.empty()) cudaEventCreate(&e);
        else e = free_.back(), free_.pop_back();
        cudaEventRecord(e, s);
        return e;
    }
    void flush() {
        for (auto& p : pending_) {
            cudaEventSynchronize(p.b);
            float ms = 0;
            cudaEventElapsedTime(&ms, p.a, p.b);
            Total& t = totals_[p.name];
            t.calls++, t.ms += ms;
            free_.push_back(p.a), free_.push_back(p.b);
        }
        pending_.clear();
    }

    bool enabled_ = false;
    std::vector<Pending> pending_;
    std::vector<cudaEvent_t> free_;
    std::map<std::string, Total> totals_;
};

}  // namespace osprey::backend::cuda
