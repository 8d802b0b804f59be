// Decode steps through op graphs (the CUDA-graph path of Model::forward), checked on the CPU: a backend that
// records ops during capture and replays them on launch stands in for CUDA graphs. Replayed, padded decode steps
// must give exactly the logits of eager steps (the CPU kernels are batch-invariant), graphs must be reused across
// steps, and recaptured when the workspace or the backend's scratch moves.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <numeric>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "engine/model_loader.h"
#include "kv/paged_kv_cache.h"
#include "model_test_util.h"

using namespace osprey;
using backend::Backend;

namespace {

// Runs every op on a CPU backend, except between begin_capture() and end_capture(), where ops are only recorded.
class RecordingBackend final : public Backend {
  public:
    struct Graph final : backend::OpGraph {
        RecordingBackend* owner;
        std::vector<std::function<void()>> ops;
        uint64_t epoch;
        void launch() override {
            owner->n_launches++;
            for (auto& op : ops) op();
        }
        bool valid() const override { return epoch == owner->epoch; }
    };

    std::unique_ptr<Backend> cpu = backend::make_cpu_backend(2);
    std::vector<std::function<void()>>* recording = nullptr;
    std::unique_ptr<Graph> open;
    uint64_t epoch = 0;  // bump to play a scratch area that moved
    int n_launches = 0;

    std::string name() const override { return "recording(" + cpu->name() + ")"; }
    Device device() const override { return cpu->device(); }
    backend::Buffer alloc(size_t n) override { return cpu->alloc(n); }
    void free_raw(void* d, size_t n) override { cpu->free_raw(d, n); }
    void copy_from_host(void* dst, const void* src, size_t n) override {
        if (recording) raise(ErrorCode::Internal, "host copy during capture");
        cpu->copy_from_host(dst, src, n);
    }
    void copy_to_host(void* dst, const void* src, size_t n) override {
        if (recording) raise(ErrorCode::Internal, "host copy during capture");
        cpu->copy_to_host(dst, src, n);
    }
    void copy(void* dst, const void* src, size_t n) override { cpu->copy(dst, src, n); }
    void synchronize() override { cpu->synchronize(); }
    bool supports_matmul(DType t) const override { return cpu->supports_matmul(t); }
    bool supports_embedding(DType t) const override { return cpu->supports_embedding(t); }
    bool supports_kv_dtype(DType t) const override { return cpu->supports_kv_dtype(t); }
    void prepare_matrix(const Tensor& w) override { cpu->prepare_matrix(w); }

    bool supports_graphs() const override { return true; }
    void begin_capture() override {
        open = std::make_unique<Graph>();
        open->owner = this;
        open->epoch = epoch;
        recording = &open->ops;
    }
    std::unique_ptr<backend::OpGraph> end_capture() override {
        recording = nullptr;
        return std::move(open);
    }
    void abort_capture() override {
        recording = nullptr;
        open.reset();
    }

    // Runs op now, or records it while capturing.
    void run(std::function<void()> op) {
        if (recording) recording->push_back(std::move(op));
        else op();
    }

    void embedding(Tensor out, const Tensor& table, const Tensor& ids, float s) override {
        run([=, this] { cpu->embedding(out, table, ids, s); });
    }
    void matmul(Tensor out, const Tensor& x, const Tensor& w) override {
        run([=, this] { cpu->matmul(out, x, w); });
    }
    void matmul_multi(std::span<Tensor> outs, const Tensor& x, std::span<const Tensor> ws) override {
        std::vector<Tensor> o(outs.begin(), outs.end()), w(ws.begin(), ws.end());
        run([=, this]() mutable { cpu->matmul_multi(o, x, w); });
    }
    void gated_matmul(Tensor gate, Tensor up, const Tensor& x, const Tensor& wg, const Tensor& wu,
                      backend::Activation act) override {
        run([=, this] { cpu->gated_matmul(gate, up, x, wg, wu, act); });
    }
    void add_bias(Tensor x, const Tensor& bias) override {
        run([=, this] { cpu->add_bias(x, bias); });
    }
    void add(Tensor out, const Tensor& a, const Tensor& b) override {
        run([=, this] { cpu->add(out, a, b); });
    }
    void rms_norm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
        run([=, this] { cpu->rms_norm(out, x, w, eps); });
    }
    void add_rms_norm(Tensor x, const Tensor& d, Tensor out, const Tensor& w, float eps) override {
        run([=, this] { cpu->add_rms_norm(x, d, out, w, eps); });
    }
    void gated_activation(Tensor out, const Tensor& g, const Tensor& u, backend::Activation act) override {
        run([=, this] { cpu->gated_activation(out, g, u, act); });
    }
    void rope(Tensor x, const Tensor& pos, const Tensor& inv, const backend::RopeParams& p) override {
        run([=, this] { cpu->rope(x, pos, inv, p); });
    }
    void kv_write(backend::KvLayerView kv, const Tensor& k, const Tensor& v, const backend::AttentionBatch& b) override {
        run([=, this] { cpu->kv_write(kv, k, v, b); });
    }
    void rope_kv_write(Tensor q, Tensor k, const Tensor& v, const Tensor& inv, const backend::RopeParams& rq,
                       const backend::RopeParams& rk, backend::KvLayerView kv,
                       const backend::AttentionBatch& b) override {
        run([=, this] { cpu->rope_kv_write(q, k, v, inv, rq, rk, kv, b); });
    }
    void paged_attention(Tensor out, const Tensor& q, backend::KvLayerView kv, const backend::AttentionBatch& b,
                         const backend::AttentionParams& p) override {
        run([=, this] { cpu->paged_attention(out, q, kv, b, p); });
    }
    void gather_rows(Tensor out, const Tensor& x, const Tensor& rows) override {
        run([=, this] { cpu->gather_rows(out, x, rows); });
    }
    void argmax_rows(Tensor ids, const Tensor& logits) override {
        run([=, this] { cpu->argmax_rows(ids, logits); });
    }
    void sample_rows(Tensor ids, const Tensor& logits, const Tensor& params) override {
        run([=, this] { cpu->sample_rows(ids, logits, params); });
    }
    void scale(Tensor x, float s, float softcap) override {
        run([=, this] { cpu->scale(x, s, softcap); });
    }
};

constexpr int kBlockSize = 16;
constexpr int kChunk = 128;

// A model on `be` with its own KV pool; greedy decoding of a ragged batch, logits of every decode step kept.
struct Runner {
    engine::LoadedModel m;
    std::unique_ptr<kv::PagedKvCache> kv;

    Runner(Backend& be, bool graphs) {
        engine::LoadOptions lo;
        lo.need_tokenizer = false;
        lo.enforce_eager = !graphs;
        m = engine::load_model(test_util::smollm2_path(), be, lo);
        kv::KvCacheShape s{m.config.n_layers, m.config.n_kv_heads, m.config.head_dim, kBlockSize, DType::F32};
        kv = std::make_unique<kv::PagedKvCache>(be, s, 256);
    }

    // Prefill every prompt in one step, then n_decode decode steps; returns [step][seq] logits rows.
    std::vector<std::vector<std::vector<float>>> run(const std::vector<std::vector<int32_t>>& prompts, int n_decode) {
        const size_t n = prompts.size();
        std::vector<std::vector<int32_t>> seqs = prompts, tables(n);
        int next_block = 0;
        for (size_t s = 0; s < n; s++) {
            const int n_blocks = (int(prompts[s].size()) + n_decode + kBlockSize - 1) / kBlockSize;
            for (int b = 0; b < n_blocks; b++) tables[s].push_back(255 - next_block++);  // from the top of the pool
        }
        std::vector<int> n_cached(n, 0);
        std::vector<std::vector<std::vector<float>>> out;
        // Prompts longer than kChunk are first prefilled alone, kChunk tokens a step, without logits.
        for (size_t s = 0; s < n; s++)
            while (int(seqs[s].size()) - n_cached[s] > kChunk) {
                model::StepInput in;
                in.add_sequence(std::span<const int32_t>(seqs[s].data() + n_cached[s], size_t(kChunk)), n_cached[s],
                                tables[s], kBlockSize, model::StepInput::Logits::None);
                EXPECT_EQ(m.model->forward(in, *kv).rows(), 0);
                n_cached[s] += kChunk;
            }
        for (int step = 0; step <= n_decode; step++) {
            model::StepInput in;
            for (size_t s = 0; s < n; s++)
                in.add_sequence(std::span<const int32_t>(seqs[s].data() + n_cached[s], seqs[s].size() - size_t(n_cached[s])),
                                n_cached[s], tables[s], kBlockSize, model::StepInput::Logits::Last);
            const Tensor logits = m.model->forward(in, *kv);
            EXPECT_EQ(logits.rows(), int64_t(n));
            const int64_t v = logits.cols();
            std::vector<float> host(size_t(n * v));
            m.model->backend().copy_to_host(host.data(), logits.data, host.size() * 4);
            out.emplace_back();
            for (size_t s = 0; s < n; s++) {
                out.back().emplace_back(host.begin() + long(s) * v, host.begin() + long(s + 1) * v);
                n_cached[s] = int(seqs[s].size());
                const auto& row = out.back().back();
                seqs[s].push_back(int32_t(std::max_element(row.begin(), row.end()) - row.begin()));
            }
        }
        return out;
    }
};

std::vector<std::vector<int32_t>> prompts(int n) {
    const test_util::ModelGolden g = test_util::read_model_golden("smollm2");
    std::vector<std::vector<int32_t>> p;
    for (int s = 0; s < n; s++) {
        const int len = 2 + (s * 37) % 70;  // several tokens: the first step is a prefill
        p.emplace_back(g.tokens.begin() + 11 * s, g.tokens.begin() + 11 * s + len);
    }
    return p;
}

}  // namespace

TEST(OpGraphs, PaddedReplayedDecodeEqualsEagerExactly) {
    if (!std::filesystem::exists(test_util::smollm2_path())) GTEST_SKIP() << "model not fetched";
    auto eager_be = backend::make_cpu_backend(2);
    RecordingBackend graph_be;
    Runner eager(*eager_be, false), graphs(graph_be, true);
    for (int n : {1, 3, 11}) {  // 11 sequences pad to 16
        SCOPED_TRACE(n);
        const auto p = prompts(n);
        const int launches_before = graph_be.n_launches;
        const auto a = eager.run(p, 6), b = graphs.run(p, 6);
        for (size_t step = 0; step < a.size(); step++)
            for (size_t s = 0; s < a[step].size(); s++)
                ASSERT_EQ(a[step][s], b[step][s]) << "step " << step << " seq " << s;
        // 6 decode steps: the first runs eagerly and captures, the other 5 replay (the context bucket is 128).
        EXPECT_EQ(graph_be.n_launches - launches_before, 5);
    }
    EXPECT_EQ(graphs.m.model->n_graphs_captured(), 3);
    EXPECT_EQ(eager.m.model->n_graphs_captured(), 0);
    EXPECT_EQ(graph_be.n_launches, 15);
}

TEST(OpGraphs, RecapturedWhenBuffersMove) {
    if (!std::filesystem::exists(test_util::smollm2_path())) GTEST_SKIP() << "model not fetched";
    auto eager_be = backend::make_cpu_backend(2);
    RecordingBackend graph_be;
    Runner eager(*eager_be, false), graphs(graph_be, true);
    const auto p = prompts(2);
    graphs.run(p, 3);
    ASSERT_EQ(graphs.m.model->n_graphs_captured(), 1);
    // The backend's scratch moved: the graph is stale and must be captured again, with the same results.
    graph_be.epoch++;
    auto a = eager.run(p, 3), b = graphs.run(p, 3);
    EXPECT_EQ(a, b);
    EXPECT_EQ(graphs.m.model->n_graphs_captured(), 2);
    // A longer prefill grows the workspace (new activation buffers; its decode steps fall in the 512 bucket) ...
    std::vector<std::vector<int32_t>> longer = {std::vector<int32_t>(300, 42), p[0]};
    a = eager.run(longer, 3), b = graphs.run(longer, 3);
    EXPECT_EQ(a, b);
    EXPECT_EQ(graphs.m.model->n_graphs_captured(), 3);
    // ... after which the first bucket's graph is stale too.
    a = eager.run(p, 3), b = graphs.run(p, 3);
    EXPECT_EQ(a, b);
    EXPECT_EQ(graphs.m.model->n_graphs_captured(), 4);
}
