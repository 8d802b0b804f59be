// Penalties and log-probabilities on the device against the CPU backend, which runs the references of
// backend/sampling.h (themselves checked against the host sampler's statements in tests/unit/backend): penalised
// rows bit for bit, the same top ids in the same order (ties by id), lse within float rounding of the log and the
// final add (the double sums run in a different order), token logprobs exactly logit - lse.
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "backend/sampling.h"
#include "backend_ops_util.h"

namespace osprey::backend::testing {

namespace {

// Rows of logits: normal values, some rows with long runs of ties (few distinct values, -0 against +0) and rows
// whose maximum repeats.
std::vector<float> logit_rows(int64_t R, int64_t V, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 3.0f);
    std::vector<float> v(size_t(R * V));
    for (int64_t r = 0; r < R; r++) {
        float* row = v.data() + r * V;
        const int kind = int(r % 4);
        for (int64_t i = 0; i < V; i++) {
            if (kind == 1) {
                const int q = int(rng() % 7);
                row[i] = q == 6 ? ((i & 1) ? -0.0f : 0.0f) : float(q) * 0.75f - 2.0f;
            } else {
                row[i] = d(rng);
            }
        }
        if (kind == 2)
            for (int j = 0; j < 25; j++) row[(j * 7919 + r) % V] = 20.0f;  // 25 equal maxima
    }
    return v;
}

double float_ulp(double x) { return std::ldexp(1.0, std::ilogb(std::max(std::fabs(x), 1e-30)) - 23); }

}  // namespace

TEST_F(BackendOps, ApplyPenaltiesMatchesTheReferenceBitForBit) {
    for (int64_t R : {int64_t(1), int64_t(7), int64_t(128)}) {
        for (int64_t V : {int64_t(1000), int64_t(49152), int64_t(128256)}) {
            std::mt19937 rng(uint32_t(R * 131 + V));
            std::vector<float> logits = logit_rows(R, V, uint32_t(R + V));
            std::vector<int32_t> entries, row_start = {0};
            std::vector<float> params;
            const float cases[][3] = {{1.3f, 0.0f, 0.0f}, {1.0f, 0.5f, 0.3f},  {0.7f, -0.4f, 1.1f},
                                      {1.0f, 0.0f, 0.0f}, {2.5f, 2.0f, -2.0f}, {1.17f, 0.31f, 0.77f}};
            for (int64_t r = 0; r < R; r++) {
                // A history of 0..2000 tokens from a small pool (many repeats), a few ids outside [0, V).
                const int n_hist = int(rng() % 2001), n_prompt = n_hist == 0 ? 0 : int(rng() % uint32_t(n_hist + 1));
                const int pool = 1 + int(rng() % 1500);
                std::map<int32_t, int32_t> counts;
                for (int i = 0; i < n_hist; i++) {
                    const int u = int(rng() % uint32_t(pool));
                    const int32_t id = u % 211 == 5 ? int32_t(V + u) : int32_t((int64_t(u) * 7907 + r) % V);
                    if (i < n_prompt) counts.emplace(id, 0);
                    else counts[id]++;
                }
                std::vector<std::pair<int32_t, int32_t>> pairs(counts.begin(), counts.end());
                std::shuffle(pairs.begin(), pairs.end(), rng);
                for (auto [id, c] : pairs) entries.push_back(id), entries.push_back(c);
                row_start.push_back(int32_t(entries.size() / 2));
                const float* c = cases[r % 6];
                params.insert(params.end(), {c[0], c[1], c[2], 0.0f});
            }
            const int64_t E = int64_t(entries.size() / 2);
            std::vector<float> want = logits;
            cpu().apply_penalties(Tensor(want.data(), DType::F32, {R, V}), Tensor(entries.data(), DType::I32, {E, 2}),
                                  Tensor(row_start.data(), DType::I32, {R + 1}),
                                  Tensor(params.data(), DType::F32, {R, 4}));
            DevTensor lg(gpu(), DType::F32, {R, V}, logits.data());
            DevTensor en(gpu(), DType::I32, {E, 2}, entries.data());
            DevTensor rs(gpu(), DType::I32, {R + 1}, row_start.data());
            DevTensor pr(gpu(), DType::F32, {R, 4}, params.data());
            gpu().apply_penalties(lg.t, en.t, rs.t, pr.t);
            EXPECT_TRUE(lg.guards_intact());
            const std::vector<float> got = lg.get<float>();
            int64_t differ = 0, changed = 0;
            for (size_t i = 0; i < got.size(); i++) {
                uint32_t a, b, c;
                std::memcpy(&a, &got[i], 4), std::memcpy(&b, &want[i], 4), std::memcpy(&c, &logits[i], 4);
                differ += a != b;
                changed += b != c;
            }
            EXPECT_EQ(differ, 0) << fmt::format("R={} V={}: {} logits differ from the reference", R, V, differ);
            EXPECT_GT(changed, 0) << "the penalties changed nothing";
        }
    }
}

TEST_F(BackendOps, RowLogprobsMatchTheReference) {
    double max_lse_diff = 0, max_lse_rel = 0;
    int64_t n_lse_inexact = 0, n_rows = 0;
    for (int64_t R : {int64_t(1), int64_t(7), int64_t(128)}) {
        for (int64_t V : {int64_t(1000), int64_t(49152), int64_t(128256)}) {
            const std::vector<float> logits = logit_rows(R, V, uint32_t(R * 3 + V));
            DevTensor lg(gpu(), DType::F32, {R, V}, logits.data());
            for (int n : {0, 1, 5, 20}) {
                const int64_t nc = std::max(n, 1);
                std::vector<int32_t> want_ids(size_t(R * nc));
                std::vector<float> want_lp(size_t(R * nc)), want_lse(static_cast<size_t>(R));
                cpu().row_logprobs(Tensor(want_ids.data(), DType::I32, {R, nc}),
                                   Tensor(want_lp.data(), DType::F32, {R, nc}),
                                   Tensor(want_lse.data(), DType::F32, {R}),
                                   Tensor(const_cast<float*>(logits.data()), DType::F32, {R, V}), n);
                DevTensor ids(gpu(), DType::I32, {R, nc}), lp(gpu(), DType::F32, {R, nc});
                DevTensor lse(gpu(), DType::F32, {R});
                gpu().row_logprobs(ids.t, lp.t, lse.t, lg.t, n);
                EXPECT_TRUE(ids.guards_intact() && lp.guards_intact() && lse.guards_intact());
                const std::vector<int32_t> got_ids = ids.get<int32_t>();
                const std::vector<float> got_lp = lp.get<float>(), got_lse = lse.get<float>();
                for (int64_t r = 0; r < R; r++) {
                    const float* row = logits.data() + r * V;
                    const float m = *std::max_element(row, row + V);
                    const double d = std::fabs(double(got_lse[size_t(r)]) - double(want_lse[size_t(r)]));
                    // float(log s) and m + it each round once: an ulp of each apart at most.
                    const double tol = float_ulp(want_lse[size_t(r)] - m) + float_ulp(want_lse[size_t(r)]);
                    EXPECT_LE(d, tol) << fmt::format("R={} V={} n={} row {}: lse {} vs {}", R, V, n, r,
                                                     got_lse[size_t(r)], want_lse[size_t(r)]);
                    if (n == 0) {
                        max_lse_diff = std::max(max_lse_diff, d);
                        const double mag = std::max(1e-30, std::fabs(double(want_lse[size_t(r)])));
                        max_lse_rel = std::max(max_lse_rel, d / mag);
                        n_lse_inexact += d != 0;
                        n_rows++;
                        uint32_t poison;
                        std::memcpy(&poison, &got_ids[size_t(r)], 4);
                        EXPECT_EQ(poison, 0xFFFFFFFFu) << "n = 0 must not write the top ids";
                        continue;
                    }
                    for (int j = 0; j < n; j++) {
                        const size_t k = size_t(r * n + j);
                        ASSERT_EQ(got_ids[k], want_ids[k])
                            << fmt::format("R={} V={} n={} row {} slot {}", R, V, n, r, j);
                        EXPECT_EQ(got_lp[k], row[got_ids[k]] - got_lse[size_t(r)]);
                    }
                }
            }
        }
    }
    fmt::print("row_logprobs: lse max |gpu - cpu| = {:.3g} (relative {:.3g}), {} of {} rows not bit-identical\n",
               max_lse_diff, max_lse_rel, n_lse_inexact, n_rows);
}

TEST_F(BackendOps, TokenLogprobsAreLogitMinusLse) {
    const int64_t R = 7, V = 49152;
    const std::vector<float> logits = logit_rows(R, V, 99);
    std::vector<float> lse = {1.0f, -3.5f, 10.25f, 0.0f, 7.0f, 2.0f, 5.5f};
    std::vector<int32_t> ids = {0, int32_t(V - 1), 17, 4096, int32_t(V), -1, 30000};
    DevTensor lg(gpu(), DType::F32, {R, V}, logits.data());
    DevTensor ls(gpu(), DType::F32, {R}, lse.data());
    DevTensor id(gpu(), DType::I32, {R}, ids.data());
    DevTensor out(gpu(), DType::F32, {R});
    gpu().token_logprobs(out.t, lg.t, ls.t, id.t);
    const std::vector<float> got = fetch(out, "token_logprobs");
    for (int64_t r = 0; r < R; r++) {
        if (ids[size_t(r)] < 0 || ids[size_t(r)] >= V) {
            EXPECT_TRUE(std::isnan(got[size_t(r)])) << "row " << r;
            continue;
        }
        EXPECT_EQ(got[size_t(r)], logits[size_t(r * V + ids[size_t(r)])] - lse[size_t(r)]) << "row " << r;
    }
}

// Kernel times at a production batch (R = 128, Llama-3 vocabulary); informational.
TEST_F(BackendOps, LogitOpsTimings) {
    const int64_t R = 128, V = 128256;
    const std::vector<float> logits = logit_rows(R, V, 5);
    std::vector<int32_t> entries, row_start = {0}, ids(static_cast<size_t>(R));
    std::vector<float> params;
    for (int64_t r = 0; r < R; r++) {
        for (int i = 0; i < 1000; i++) entries.push_back(int32_t((i * 127 + r) % V)), entries.push_back(i % 3);
        row_start.push_back(int32_t(entries.size() / 2));
        params.insert(params.end(), {1.1f, 0.2f, 0.3f, 0.0f});
        ids[size_t(r)] = int32_t(r * 1000);
    }
    const int64_t E = int64_t(entries.size() / 2);
    DevTensor lg(gpu(), DType::F32, {R, V}, logits.data()), en(gpu(), DType::I32, {E, 2}, entries.data());
    DevTensor rs(gpu(), DType::I32, {R + 1}, row_start.data()), pr(gpu(), DType::F32, {R, 4}, params.data());
    DevTensor top_ids(gpu(), DType::I32, {R, 20}), top_lp(gpu(), DType::F32, {R, 20}), lse(gpu(), DType::F32, {R});
    DevTensor idt(gpu(), DType::I32, {R}, ids.data()), out(gpu(), DType::F32, {R});
    auto timed = [&](const std::function<void()>& op) { return time_us(gpu(), 20, op); };
    const double t_pen = timed([&] { gpu().apply_penalties(lg.t, en.t, rs.t, pr.t); });
    double t_lp[4];
    const int ns[4] = {0, 1, 5, 20};
    for (int i = 0; i < 4; i++) t_lp[i] = timed([&] { gpu().row_logprobs(top_ids.t, top_lp.t, lse.t, lg.t, ns[i]); });
    const double t_tok = timed([&] { gpu().token_logprobs(out.t, lg.t, lse.t, idt.t); });
    fmt::print("R={} V={}: apply_penalties (1000 entries/row) {:.1f} us; row_logprobs n=0 {:.1f} us, n=1 {:.1f} us, "
               "n=5 {:.1f} us, n=20 {:.1f} us; token_logprobs {:.1f} us\n",
               R, V, t_pen, t_lp[0], t_lp[1], t_lp[2], t_lp[3], t_tok);
}

}  // namespace osprey::backend::testing
