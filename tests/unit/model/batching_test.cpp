// Batching and paging change nothing: a sequence alone and inside a ragged batch of 8 (blocks scattered through the
// pool) gives the same greedy tokens and logits; chunked prefill equals one-shot prefill. The CPU kernels are
// batch-invariant by construction, so the comparisons are bit-exact (the 1e-4 bound of the spec is the fallback).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "engine/model_loader.h"
#include "kv/paged_kv_cache.h"
#include "model_test_util.h"

using namespace osprey;

namespace {

constexpr int kBlockSize = 16;

struct Fixture {
    std::unique_ptr<backend::Backend> be = backend::make_cpu_backend(0);
    engine::LoadedModel m;
    std::unique_ptr<kv::PagedKvCache> kv;
    std::vector<int32_t> free_blocks;  // shuffled: sequences get scattered blocks

    explicit Fixture(const std::string& path, int n_blocks, uint32_t seed) {
        engine::LoadOptions lo;
        lo.need_tokenizer = false;
        m = engine::load_model(path, *be, lo);
        kv::KvCacheShape s{m.config.n_layers, m.config.n_kv_heads, m.config.head_dim, kBlockSize, DType::F32};
        kv = std::make_unique<kv::PagedKvCache>(*be, s, n_blocks);
        free_blocks.resize(size_t(n_blocks));
        std::iota(free_blocks.begin(), free_blocks.end(), 0);
        std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(seed));
    }
    std::vector<int32_t> take_blocks(int n_tokens) {
        const int n = (n_tokens + kBlockSize - 1) / kBlockSize;
        std::vector<int32_t> t(free_blocks.end() - n, free_blocks.end());
        free_blocks.resize(free_blocks.size() - size_t(n));
        return t;
    }
    std::vector<float> rows(const Tensor& logits, int r) {
        const int64_t v = logits.cols();
        std::vector<float> out(static_cast<size_t>(v));
        be->copy_to_host(out.data(), static_cast<const float*>(logits.data) + r * v, size_t(v) * 4);
        return out;
    }
};

int argmax(const std::vector<float>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

float max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    float m = 0, scale = 0;
    for (size_t i = 0; i < a.size(); i++) scale = std::max(scale, std::fabs(a[i]));
    for (size_t i = 0; i < a.size(); i++) m = std::max(m, std::fabs(a[i] - b[i]) / std::max(scale, 1e-6f));
    return m;
}

// Greedy run of prompts: prefill (all prompts in one ragged step) then n_decode batched decode steps.
// Returns per sequence the logits of every step.
std::vector<std::vector<std::vector<float>>> run_batch(Fixture& f, const std::vector<std::vector<int32_t>>& prompts,
                                                       int n_decode) {
    const size_t n = prompts.size();
    std::vector<std::vector<int32_t>> tables(n), seqs = prompts;
    for (size_t s = 0; s < n; s++) tables[s] = f.take_blocks(int(prompts[s].size()) + n_decode);
    std::vector<std::vector<std::vector<float>>> out(n);
    std::vector<int> n_cached(n, 0);
    for (int step = 0; step <= n_decode; step++) {
        model::StepInput in;
        for (size_t s = 0; s < n; s++) {
            std::span<const int32_t> toks(seqs[s].data() + n_cached[s], seqs[s].size() - size_t(n_cached[s]));
            in.add_sequence(toks, n_cached[s], tables[s], kBlockSize, model::StepInput::Logits::Last);
        }
        const Tensor logits = f.m.model->forward(in, *f.kv);
        for (size_t s = 0; s < n; s++) {
            out[s].push_back(f.rows(logits, int(s)));
            n_cached[s] = int(seqs[s].size());
            seqs[s].push_back(argmax(out[s].back()));
        }
    }
    return out;
}

std::vector<std::vector<int32_t>> test_prompts(const test_util::ModelGolden& g) {
    std::vector<std::vector<int32_t>> p;
    const int lengths[8] = {5, 37, 16, 1, 64, 23, 17, 100};
    int offset = 0;
    for (int len : lengths) {
        p.emplace_back(g.tokens.begin() + offset, g.tokens.begin() + offset + len);
        offset += 13;
    }
    return p;
}

}  // namespace

TEST(Batching, RaggedBatchOfEightEqualsEachSequenceAlone) {
    if (!std::filesystem::exists(test_util::smollm2_path())) GTEST_SKIP() << "model not fetched";
    const auto prompts = test_prompts(test_util::read_model_golden("smollm2"));
    constexpr int kDecode = 6;
    Fixture batched(test_util::smollm2_path(), 256, 1);
    const auto together = run_batch(batched, prompts, kDecode);
    for (size_t s = 0; s < prompts.size(); s++) {
        Fixture alone(test_util::smollm2_path(), 64, uint32_t(100 + s));
        const auto single = run_batch(alone, {prompts[s]}, kDecode);
        for (int step = 0; step <= kDecode; step++) {
            const auto& a = single[0][size_t(step)];
            const auto& b = together[s][size_t(step)];
            EXPECT_EQ(argmax(a), argmax(b)) << "sequence " << s << " step " << step;
            EXPECT_EQ(a, b) << "sequence " << s << " step " << step << ": not bit-identical, max rel diff "
                            << max_rel_diff(a, b);
            EXPECT_LE(max_rel_diff(a, b), 1e-4f);
        }
    }
}

TEST(Batching, ChunkedPrefillEqualsOneShot) {
    if (!std::filesystem::exists(test_util::smollm2_path())) GTEST_SKIP() << "model not fetched";
    const test_util::ModelGolden g = test_util::read_model_golden("smollm2");
    const std::vector<int32_t> prompt(g.tokens.begin(), g.tokens.begin() + 150);
    Fixture f(test_util::smollm2_path(), 64, 7);
    std::vector<float> reference;
    for (int chunk : {150, 1, 7, 16, 33, 64}) {
        const std::vector<int32_t> table = f.take_blocks(int(prompt.size()));
        int n_cached = 0;
        std::vector<float> last;
        while (n_cached < int(prompt.size())) {
            const int n = std::min(chunk, int(prompt.size()) - n_cached);
            model::StepInput in;
            in.add_sequence(std::span<const int32_t>(prompt.data() + n_cached, size_t(n)), n_cached, table, kBlockSize,
                            model::StepInput::Logits::Last);
            last = f.rows(f.m.model->forward(in, *f.kv), 0);
            n_cached += n;
        }
        f.free_blocks.insert(f.free_blocks.begin(), table.begin(), table.end());
        if (reference.empty()) {
            reference = last;
            continue;
        }
        EXPECT_EQ(last, reference) << "chunk " << chunk << ": not bit-identical, max rel diff "
                                   << max_rel_diff(last, reference);
        EXPECT_LE(max_rel_diff(last, reference), 1e-4f) << "chunk " << chunk;
    }
}
