// Matmul microbenchmark on the SmolLM2-135M / Gemma 3 shapes (not part of ctest).
// Build: bench/kernels/build.sh [build-dir]; run: matmul_bench [n_threads] [isa] [min_seconds]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"

using namespace osprey;
using namespace osprey::backend;

namespace {

double thread_cpu_s() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

std::vector<uint8_t> make_weights(DType dtype, int64_t n, int64_t k) {
    std::vector<float> row(static_cast<size_t>(k));
    const size_t rb = dtype_row_bytes(dtype, k);
    std::vector<uint8_t> w(rb * size_t(n));
    uint32_t s = 12345;
    for (int64_t r = 0; r < n; r++) {
        for (auto& v : row) s = s * 1664525u + 1013904223u, v = float(int(s >> 9) % 2001 - 1000) / 1000.0f;
        cpu::quantize_row_ref(dtype, row.data(), w.data() + size_t(r) * rb, k);
    }
    return w;
}

}  // namespace

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
    const char* isa = argc > 2 ? argv[2] : nullptr;
    const double min_s = argc > 3 ? std::atof(argv[3]) : 0.5;
    auto be = cpu::make_cpu_backend_with_isa(threads, isa);
    std::printf("%s\n", be->name().c_str());
    struct Shape { DType dtype; int64_t n, k; };
    const std::vector<Shape> shapes = {
        {DType::Q4_1, 576, 576},  {DType::Q4_1, 192, 576}, {DType::Q4_1, 1536, 576}, {DType::Q4_1, 576, 1536},
        {DType::Q8_0, 49152, 576}, {DType::Q5_0, 256, 640}, {DType::Q4_K, 2048, 640}, {DType::Q6_K, 640, 2048},
        {DType::Q8_0, 1024, 640},  {DType::F16, 576, 576},
        {DType::F16, 1536, 576},   {DType::F16, 576, 1536}, {DType::Q8_0, 576, 576}, {DType::Q8_0, 1536, 576},
        {DType::Q8_0, 576, 1536}, {DType::BF16, 576, 576}, {DType::BF16, 576, 1536},
        // Streaming from memory (larger than the last-level cache), as decode reads a whole model per token.
        {DType::Q4_1, 92160, 576}, {DType::F16, 49152, 576},
    };
    const char* only = std::getenv("MATMUL_BENCH_ONLY");  // e.g. "q4_1": one dtype
    std::printf("%-5s %6s %6s %5s %10s %10s %10s\n", "dtype", "N", "K", "M", "us/call", "GFLOP/s", "GB/s(w)");
    for (const Shape& sh : shapes) {
        if (only && std::string(dtype_name(sh.dtype)) != only) continue;
        const auto w = make_weights(sh.dtype, sh.n, sh.k);
        for (int64_t M : {int64_t(1), sh.n > 40000 ? int64_t(16) : int64_t(512)}) {
            std::vector<float> x(size_t(M * sh.k)), out(size_t(M * sh.n));
            for (size_t i = 0; i < x.size(); i++) x[i] = float(int(i * 7919 % 2001) - 1000) / 1000.0f;
            Tensor to(out.data(), DType::F32, {M, sh.n}), tx(x.data(), DType::F32, {M, sh.k});
            Tensor tw(const_cast<uint8_t*>(w.data()), sh.dtype, {sh.n, sh.k});
            be->prepare_matrix(tw);  // as the model loader does (F16 / BF16 / Q8_0: panels on AVX-512)
            be->matmul(to, tx, tw);  // warm-up
            int iters = 0;
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = thread_cpu_s();
            double el = 0;
            do {
                be->matmul(to, tx, tw);
                iters++;
                el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            } while (el < min_s);
            // One thread: CPU time of this thread (robust on a shared machine); else wall time.
            const double per = (threads == 1 ? thread_cpu_s() - c0 : el) / iters;
            const double flops = 2.0 * double(M) * double(sh.n) * double(sh.k);
            std::printf("%-5s %6ld %6ld %5ld %10.1f %10.1f %10.2f\n", std::string(dtype_name(sh.dtype)).c_str(),
                        long(sh.n), long(sh.k), long(M), per * 1e6, flops / per * 1e-9, double(w.size()) / per * 1e-9);
        }
    }
    return 0;
}
