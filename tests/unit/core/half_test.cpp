#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "core/thread_pool.h"

using namespace osprey;

TEST(Half, Fp16RoundTripsEveryValue) {
    // Every finite fp16 value converts to fp32 and back unchanged.
    for (uint32_t h = 0; h < 0x10000; h++) {
        const uint16_t v = uint16_t(h);
        if (((v >> 10) & 0x1f) == 0x1f) continue;
        EXPECT_EQ(fp32_to_fp16(fp16_to_fp32(v)), v) << h;
    }
}

TEST(Half, Fp16RoundsToNearestEven) {
    EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(1.0f + 1.0f / 2048)), 1.0f);           // tie -> even
    EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(1.0f + 3.0f / 2048)), 1.0f + 2.0f / 1024);
    EXPECT_TRUE(std::isinf(fp16_to_fp32(fp32_to_fp16(70000.0f))));
    EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(5.960464477539063e-08f)), 5.960464477539063e-08f);  // smallest subnormal
}

TEST(Half, Bf16) {
    EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.5f)), 1.5f);
    EXPECT_EQ(bf16_to_fp32(fp32_to_bf16(1.00390625f)), 1.0f);  // tie -> even
    EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

TEST(DType, TraitsMatchGguf) {
    EXPECT_EQ(dtype_traits(DType::Q4_K).block_bytes, 144);
    EXPECT_EQ(*dtype_from_ggml(12), DType::Q4_K);
    EXPECT_EQ(*dtype_from_ggml(30), DType::BF16);
    EXPECT_FALSE(dtype_from_ggml(16).has_value());  // IQ2_XXS: unsupported
    EXPECT_EQ(ggml_type_name(16), "IQ2_XXS");
    EXPECT_EQ(dtype_row_bytes(DType::Q8_0, 64), 68u);
    EXPECT_EQ(*dtype_from_name("BF16"), DType::BF16);
}

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
    ThreadPool pool(3);
    for (int64_t n : {0, 1, 7, 100, 1001}) {
        std::vector<int> hits(size_t(n), 0);
        pool.parallel_for(n, 4, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; i++) hits[size_t(i)]++;
        });
        for (int h : hits) EXPECT_EQ(h, 1);
    }
}

TEST(ThreadPool, ParallelChunksRunsEveryChunkOnceWithStealing) {
    for (int threads : {2, 3}) {
        ThreadPool pool(threads);
        for (int64_t n : {1, 2, 5, 64, 1000}) {
            std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
            std::atomic<int64_t> busy{0};
            pool.parallel_chunks(n, [&](int64_t c) {
                // Uneven work: the first run's chunks are slow, so the other threads finish early and steal.
                if (c < n / threads)
                    for (int spin = 0; spin < 20000; spin++) busy.fetch_add(1, std::memory_order_relaxed);
                hits[size_t(c)]++;
            });
            for (auto& h : hits) EXPECT_EQ(h.load(), 1) << "n=" << n << " threads=" << threads;
        }
    }
}

TEST(ThreadPool, RunGivesEveryShareExactlyOnceAcrossManyJobs) {
    // Shares are claimed by whichever thread comes first (the caller takes those no worker has started): over many
    // short jobs, with workers often still asleep or late, each share of each job must still run exactly once and
    // the job must see all of them done when run() returns.
    ThreadPool pool(4);
    std::vector<std::atomic<int>> hits(4);
    for (int job = 0; job < 20000; job++) {
        for (auto& h : hits) h.store(0, std::memory_order_relaxed);
        std::atomic<int> sink{0};
        pool.run([&](int idx, int n) {
            ASSERT_EQ(n, 4);
            if (job % 7 == 0)
                for (int spin = 0; spin < 200 * idx; spin++) sink.fetch_add(1, std::memory_order_relaxed);
            hits[size_t(idx)].fetch_add(1, std::memory_order_relaxed);
        });
        for (int i = 0; i < 4; i++) ASSERT_EQ(hits[size_t(i)].load(), 1) << "job " << job << " share " << i;
    }
}
