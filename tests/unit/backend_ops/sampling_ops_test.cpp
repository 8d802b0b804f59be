// Sampling on the device against the reference (backend::sample_row, which the CPU backend runs): the same
// token for (almost) every row. The two sum the kept weights in different orders, so a draw that falls within
// float rounding of a boundary between two tokens may differ; a wrong threshold or draw would differ in most rows.
#include <fmt/format.h>

#include "backend/sampling.h"
#include "backend_ops_util.h"

namespace osprey::backend::testing {

TEST_F(BackendOps, SampleRowsMatchesTheReference) {
    // (temperature, top_k, top_p, min_p); seed and counter are set per row.
    const SamplingRow cases[] = {{0.0f, 0, 1.0f, 0.0f},  {1.0f, 0, 1.0f, 0.0f},    {0.7f, 50, 1.0f, 0.0f},
                                 {1.0f, 0, 0.9f, 0.0f},  {0.8f, 0, 1.0f, 0.05f}, {1.1f, 40, 0.95f, 0.02f}, {1.0f, 1, 1.0f, 0.0f}};
    for (int64_t V : {int64_t(1000), int64_t(49152), int64_t(128256)}) {
        const int64_t R = 64;
        // Peaked rows (a model's logits: a few likely tokens) and flat ones.
        std::vector<float> logits = random_floats(size_t(R * V), uint32_t(V), -4.0f, 4.0f);
        for (int64_t r = 0; r < R; r += 2)
            for (int j = 0; j < 20; j++) logits[size_t(r * V + (r * 7919 + j * 104729) % V)] += 8.0f + float(j % 5);
        for (const SamplingRow& c : cases) {
            std::vector<SamplingRow> rows(static_cast<size_t>(R));
            for (int64_t r = 0; r < R; r++) {
                rows[size_t(r)] = c;
                rows[size_t(r)].seed = 1000 + uint64_t(r), rows[size_t(r)].counter = uint64_t(r) * 3;
            }
            DevTensor lg(gpu(), DType::F32, {R, V}, logits.data());
            DevTensor pg(gpu(), DType::I32, {R, 8}, rows.data());
            DevTensor ids(gpu(), DType::I32, {R});
            gpu().sample_rows(ids.t, lg.t, pg.t);
            EXPECT_TRUE(ids.guards_intact());
            const std::vector<int32_t> got = ids.get<int32_t>();
            int differ = 0;
            for (int64_t r = 0; r < R; r++) {
                const int32_t want = sample_row(std::span<const float>(logits.data() + r * V, size_t(V)), rows[size_t(r)]);
                differ += got[size_t(r)] != want;
            }
            EXPECT_LE(differ, 1) << fmt::format("V={} T={} k={} p={} min_p={}: {} of {} rows differ", V, c.temperature,
                                                c.top_k, c.top_p, c.min_p, differ, R);
        }
    }
}

}  // namespace osprey::backend::testing
