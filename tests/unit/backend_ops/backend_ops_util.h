// Shared by the backend_ops tests: NMSE comparison with a report table, device tensors framed by guard bytes
// and poisoned before each op, and the fixture holding one CUDA and one CPU backend (GPU tests skip without a GPU).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/tensor.h"
#include "unit/backend/backend_test_util.h"

namespace osprey::backend::testing {

// ---------------------------------------------------------------- report

struct ReportRow {
    std::string op, variant;
    double nmse, max_abs, threshold;
    bool pass;
};

inline std::vector<ReportRow>& report() {
    static std::vector<ReportRow> rows;
    return rows;
}


struct Diff {
    double nmse = 0, max_abs = 0;
    bool finite = true;
};

inline Diff compare(const std::vector<float>& got, const std::vector<double>& ref) {
    Diff d;
    double err = 0, norm = 0;
    for (size_t i = 0; i < got.size(); i++) {
        if (!std::isfinite(got[i])) d.finite = false;
        const double e = double(got[i]) - ref[i];
        err += e * e;
        norm += ref[i] * ref[i];
        d.max_abs = std::max(d.max_abs, std::fabs(e));
    }
    d.nmse = norm > 0 ? err / norm : err;
    if (!d.finite) d.nmse = INFINITY;
    return d;
}

inline void expect_close(const std::string& op, const std::string& variant, const std::vector<float>& got,
                  const std::vector<double>& ref, double threshold) {
    ASSERT_EQ(got.size(), ref.size()) << op << " " << variant;
    const Diff d = compare(got, ref);
    const bool pass = d.finite && d.nmse <= threshold;
    report().push_back({op, variant, d.nmse, d.max_abs, threshold, pass});
    EXPECT_TRUE(pass) << op << " [" << variant << "]: nmse " << d.nmse << " (threshold " << threshold
                      << "), max abs error " << d.max_abs << (d.finite ? "" : ", non-finite output");
}

inline void expect_close(const std::string& op, const std::string& variant, const std::vector<float>& got,
                  const std::vector<float>& ref, double threshold) {
    expect_close(op, variant, got, std::vector<double>(ref.begin(), ref.end()), threshold);
}

// ---------------------------------------------------------------- device tensors with guard zones

constexpr size_t kGuard = 256;           // bytes before and after every tensor
constexpr uint8_t kGuardByte = 0xA7;
constexpr uint8_t kPoisonByte = 0xFF;    // f32 0xFFFFFFFF is a NaN

class DevTensor {
  public:
    // host == nullptr: the tensor is poisoned (NaN for f32).
    DevTensor(Backend& be, DType dtype, std::initializer_list<int64_t> shape, const void* host = nullptr)
        : be_(&be) {
        Tensor probe(nullptr, dtype, shape);
        n_bytes_ = probe.n_bytes();
        buf_ = be.alloc(n_bytes_ + 2 * kGuard);
        std::vector<uint8_t> init(n_bytes_ + 2 * kGuard, kGuardByte);
        if (host) std::memcpy(init.data() + kGuard, host, n_bytes_);
        else std::memset(init.data() + kGuard, kPoisonByte, n_bytes_);
        be.copy_from_host(buf_.data(), init.data(), init.size());
        t = Tensor(static_cast<char*>(buf_.data()) + kGuard, dtype, shape, be.device());
    }

    std::vector<uint8_t> all_bytes() const {
        be_->synchronize();
        std::vector<uint8_t> v(n_bytes_ + 2 * kGuard);
        be_->copy_to_host(v.data(), buf_.data(), v.size());
        return v;
    }
    template <typename T>
    std::vector<T> get() const {
        const std::vector<uint8_t> all = all_bytes();
        std::vector<T> v(n_bytes_ / sizeof(T));
        std::memcpy(v.data(), all.data() + kGuard, n_bytes_);
        return v;
    }
    bool guards_intact() const {
        const std::vector<uint8_t> all = all_bytes();
        for (size_t i = 0; i < kGuard; i++)
            if (all[i] != kGuardByte || all[kGuard + n_bytes_ + i] != kGuardByte) return false;
        return true;
    }

    Tensor t;

  private:
    Backend* be_;
    Buffer buf_;
    size_t n_bytes_ = 0;
};

// Microseconds per call of op on be's device (timing tests): `warmup` untimed calls, then `reps` calls launched
// back to back between two synchronizes (host clock).
inline double time_us(Backend& be, int reps, const std::function<void()>& op, int warmup = 1) {
    for (int i = 0; i < warmup; i++) op();
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; i++) op();
    be.synchronize();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
}

// Fetch an op's f32 output and check its guard zones.
inline std::vector<float> fetch(const DevTensor& out, const std::string& what) {
    EXPECT_TRUE(out.guards_intact()) << what << ": write outside the output tensor";
    return out.get<float>();
}

inline std::vector<int32_t> random_ints(size_t n, int lo, int hi, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> dist(lo, hi);
    std::vector<int32_t> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// ---------------------------------------------------------------- fixture

class BackendOps : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        if (cuda_device_count() > 0 && !gpu_) gpu_ = make_cuda_backend(0);
        if (!cpu_) cpu_ = make_cpu_backend(0);
    }
    void SetUp() override {
        if (!gpu_) GTEST_SKIP() << "no CUDA GPU present: the CUDA backend's op tests are skipped";
    }
    static Backend& gpu() { return *gpu_; }
    static Backend& cpu() { return *cpu_; }

    static inline std::unique_ptr<Backend> gpu_, cpu_;
};


}  // namespace osprey::backend::testing
