// The grouped attention kernels (q heads sharing one K/V head read each row once) against the per-head kernels:
// every score and every output bit-identical, for head sizes with and without a grouped kernel, group sizes that
// split into sub-groups, f16 and f32 pools, and context lengths around the row-step sizes.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/half.h"
#include "unit/backend/backend_test_util.h"

using namespace osprey;
using namespace osprey::backend;
using namespace osprey::backend::testing;

TEST(CpuAttentionGroup, GroupedKernelsEqualPerHeadKernelsBitForBit) {
    const cpu::CpuKernels k = cpu::select_kernels();
    if (!k.attn_scores_group) GTEST_SKIP() << "no grouped attention kernels on this CPU";
    for (bool f16 : {true, false}) {
        for (int hd : {64, 128, 256, 80}) {
            const int n_rows = 45;
            const auto kf = random_floats(size_t(n_rows * hd), 7, -1.5f, 1.5f);
            const auto vf = random_floats(size_t(n_rows * hd), 8, -1.5f, 1.5f);
            std::vector<uint16_t> kh(kf.size()), vh(vf.size());
            for (size_t i = 0; i < kf.size(); i++) kh[i] = fp32_to_fp16(kf[i]), vh[i] = fp32_to_fp16(vf[i]);
            const void* kb = f16 ? static_cast<const void*>(kh.data()) : kf.data();
            const void* vb = f16 ? static_cast<const void*>(vh.data()) : vf.data();
            std::vector<int64_t> offs(static_cast<size_t>(n_rows));
            for (int j = 0; j < n_rows; j++) offs[size_t(j)] = int64_t((j * 17) % n_rows) * hd;  // scattered slots
            for (int g : {1, 2, 3, 4, 5, 7, 8}) {
                const auto q = random_floats(size_t(g * hd), 9, -1.0f, 1.0f);
                for (int n : {1, 3, 4, 5, 8, 9, 44}) {
                    const int64_t stride = n + 8;
                    std::vector<float> sg(size_t(g * stride), 0.0f), sh(size_t(g * stride), 0.0f);
                    k.attn_scores_group(q.data(), g, kb, f16, offs.data(), n, hd, 0.125f, sg.data(), stride);
                    for (int h = 0; h < g; h++)
                        k.attn_scores(q.data() + h * hd, kb, f16, offs.data(), n, hd, 0.125f, sh.data() + h * stride);
                    for (int h = 0; h < g; h++)
                        ASSERT_EQ(std::memcmp(sg.data() + h * stride, sh.data() + h * stride, size_t(n) * 4), 0)
                            << "scores f16=" << f16 << " hd=" << hd << " g=" << g << " n=" << n << " head " << h;
                    std::vector<float> og(size_t(g * hd)), oh(size_t(g * hd));
                    k.attn_values_group(og.data(), g, sg.data(), stride, vb, f16, offs.data(), n, hd);
                    for (int h = 0; h < g; h++)
                        k.attn_values(oh.data() + h * hd, sh.data() + h * stride, vb, f16, offs.data(), n, hd);
                    ASSERT_EQ(std::memcmp(og.data(), oh.data(), og.size() * 4), 0)
                        << "values f16=" << f16 << " hd=" << hd << " g=" << g << " n=" << n;
                }
            }
        }
    }
}
