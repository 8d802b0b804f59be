// The serving engine on SmolLM2: continuous batching, preemption, prefix caching, parallel sampling, stop strings
// and aborts — each checked against the same request served alone.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "engine/generator.h"

using namespace osprey;
using namespace osprey::engine;

namespace {

std::string model_path() { return default_model_path(); }

struct Loaded {
    std::unique_ptr<backend::Backend> be = backend::make_cpu_backend(0);
    LoadedModel m;
    Loaded() { m = load_model(model_path(), *be, LoadOptions{}); }
};

Loaded& shared_model() {
    static Loaded loaded;
    return loaded;
}

GenerationRequest request(const std::string& id, const std::string& text, int max_tokens) {
    GenerationRequest r;
    r.request_id = id;
    r.prompt = shared_model().m.tokenizer->encode(text, true, false);
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    return r;
}

const std::vector<std::string> kPrompts = {
    "The capital of France is",
    "Once upon a time, in a small village near the mountains, there lived",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
    "The quick brown fox",
    "In 1492, Columbus sailed the ocean blue. The next year he",
    "Water boils at",
    "My favourite programming language is",
};

EngineConfig small_config(AsyncScheduling async = AsyncScheduling::Off) {
    EngineConfig c;
    c.async_scheduling = async;
    c.max_num_seqs = 8;
    c.max_num_batched_tokens = 64;
    c.max_model_len = 256;
    c.kv_cache_bytes = 64u << 20;
    return c;
}

std::vector<RequestOutput> run_concurrently(Engine& e, const std::vector<GenerationRequest>& reqs) {
    std::vector<std::future<std::vector<RequestOutput>>> futs;
    for (const auto& r : reqs) futs.push_back(std::async(std::launch::async, [&e, r] { return generate_blocking(e, r); }));
    std::vector<RequestOutput> out;
    for (auto& f : futs) out.push_back(f.get()[0]);
    return out;
}

// Stats are published after each step, so the last release can trail the last callback by a moment.
int blocks_used_when_idle(Engine& e) {
    for (int i = 0; i < 200 && e.stats().n_kv_blocks_used != 0; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return e.stats().n_kv_blocks_used;
}

// Every engine test runs with and without async scheduling (on the CPU too: the same bookkeeping, without overlap).
class EngineModes : public ::testing::TestWithParam<AsyncScheduling> {};

#define SKIP_WITHOUT_MODEL() \
    if (!std::filesystem::exists(model_path())) GTEST_SKIP() << "model not fetched: " << model_path()

}  // namespace

INSTANTIATE_TEST_SUITE_P(Sync, EngineModes, ::testing::Values(AsyncScheduling::Off));
INSTANTIATE_TEST_SUITE_P(Async, EngineModes, ::testing::Values(AsyncScheduling::On));

TEST_P(EngineModes, BatchedGreedyEqualsAloneAndPreemptionIsTransparent) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    std::vector<GenerationRequest> reqs;
    for (size_t i = 0; i < kPrompts.size(); i++) reqs.push_back(request("r" + std::to_string(i), kPrompts[i], 24));
    std::vector<RequestOutput> alone;
    {
        Engine e(*L.m.model, *L.m.tokenizer, small_config());
        for (const auto& r : reqs) alone.push_back(generate_blocking(e, r)[0]);
        EXPECT_EQ(blocks_used_when_idle(e), 0);
    }
    {
        Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
        const auto together = run_concurrently(e, reqs);
        for (size_t i = 0; i < reqs.size(); i++) {
            EXPECT_EQ(together[i].token_ids, alone[i].token_ids) << kPrompts[i];
            EXPECT_EQ(together[i].text, alone[i].text);
            EXPECT_EQ(together[i].n_prompt_tokens, int(reqs[i].prompt.size()));
        }
        // The mode under test really ran: async steps launch before the previous step's ids are read.
        if (GetParam() == AsyncScheduling::On) EXPECT_GT(e.stats().n_overlapped_steps, 0);
        else EXPECT_EQ(e.stats().n_overlapped_steps, 0);
    }
    {
        // A pool of 3 blocks x 16 tokens... at least one max_model_len sequence: 5 blocks of 16 for 80 tokens.
        EngineConfig tiny = small_config(GetParam());
        tiny.max_model_len = 80;
        tiny.block_size = 16;
        const model::ModelConfig& c = L.m.model->config();
        tiny.kv_cache_bytes = size_t(5) * 16 * 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4;
        Engine e(*L.m.model, *L.m.tokenizer, tiny);
        const auto squeezed = run_concurrently(e, reqs);
        EXPECT_GT(e.stats().n_preemptions, 0);
        for (size_t i = 0; i < reqs.size(); i++) EXPECT_EQ(squeezed[i].token_ids, alone[i].token_ids) << kPrompts[i];
        EXPECT_EQ(blocks_used_when_idle(e), 0);
    }
}

TEST_P(EngineModes, PrefixCacheReusesBlocksAndChangesNothing) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    std::string system = "You are a helpful assistant. ";
    for (int i = 0; i < 6; i++) system += "Answer briefly and precisely, citing facts. ";
    const auto a = generate_blocking(e, request("a", system + "Question: what is 2+2?", 12))[0];
    const auto b = generate_blocking(e, request("b", system + "Question: what is 2+2?", 12))[0];
    EXPECT_EQ(a.n_cached_prompt_tokens, 0);
    EXPECT_GE(b.n_cached_prompt_tokens, 48);
    EXPECT_EQ(a.token_ids, b.token_ids);
    EXPECT_GT(e.stats().prefix_cache_hits, 0);
}

TEST_P(EngineModes, ParallelSamplingIsSeededAndSharesThePrompt) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    GenerationRequest r = request("n", "Write a word:", 16);
    r.n = 3;
    r.params.temperature = 1.0f;
    r.params.seed = 1234;
    const auto first = generate_blocking(e, r);
    r.request_id = "n2";
    const auto second = generate_blocking(e, r);
    ASSERT_EQ(first.size(), 3u);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(first[size_t(i)].token_ids, second[size_t(i)].token_ids) << "seeded choice " << i;
        EXPECT_TRUE(first[size_t(i)].finished);
    }
    EXPECT_NE(first[0].token_ids, first[1].token_ids);
    EXPECT_EQ(blocks_used_when_idle(e), 0);
}

TEST_P(EngineModes, StopStringsEndGenerationAndAreNotEmitted) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    const auto free_run = generate_blocking(e, request("f", "1, 2, 3, 4,", 20))[0];
    ASSERT_NE(free_run.text.find("6"), std::string::npos) << free_run.text;
    GenerationRequest r = request("s", "1, 2, 3, 4,", 20);
    r.params.stop = {"6"};
    const auto stopped = generate_blocking(e, r)[0];
    EXPECT_EQ(stopped.finish_reason, FinishReason::Stop);
    EXPECT_EQ(stopped.text, free_run.text.substr(0, free_run.text.find("6")));
    // KV waste accounting: slots held by running sequences, of which those holding a computed token.
    const EngineStats st = e.stats();
    EXPECT_GT(st.kv_slots_used, 0);
    EXPECT_GE(st.kv_slots_allocated, st.kv_slots_used);
    EXPECT_LT(st.kv_slots_allocated - st.kv_slots_used, st.kv_slots_allocated);
}

TEST_P(EngineModes, AbortFreesBlocksAndContextOverflowIsAnError) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    std::promise<FinishReason> done;
    std::atomic<int> n_events{0};
    GenerationRequest r = request("x", "Tell me a long story about dragons.", 200);
    r.params.ignore_eos = true;
    e.submit(r, [&](const RequestOutput& o) {
        if (++n_events == 3) e.abort("x");
        if (o.finished) done.set_value(o.finish_reason);
    });
    EXPECT_EQ(done.get_future().get(), FinishReason::Abort);
    EXPECT_EQ(blocks_used_when_idle(e), 0);
    GenerationRequest big = request("big", "hello", 300);  // max_model_len is 256
    try {
        e.submit(big, [](const RequestOutput&) {});
        ADD_FAILURE() << "accepted a request over the context";
    } catch (const Error& err) {
        EXPECT_EQ(err.code(), ErrorCode::ContextOverflow);
    }
}

// Rows without penalties or logprobs are drawn by a step whose ids may be read back later (async scheduling); a
// request that asks for logprobs takes the synchronous path (BatchSampler::draw, logprobs on the backend). Both
// must pick the same tokens, alone and mixed in one batch, greedy and with seeded temperature / top-k / top-p.
TEST_P(EngineModes, DeviceSamplingPathEqualsTheHostSampler) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    for (const bool greedy : {true, false}) {
        SCOPED_TRACE(greedy ? "greedy" : "sampled");
        std::vector<GenerationRequest> plain, with_logprobs;
        for (size_t i = 0; i < 4; i++) {
            GenerationRequest r = request("p" + std::to_string(i), kPrompts[i], 24);
            if (!greedy) {
                r.params.temperature = 0.8f, r.params.top_k = 40, r.params.top_p = 0.9f;
                r.params.seed = 100 + i;
            }
            plain.push_back(r);
            r.request_id = "l" + std::to_string(i);
            r.params.n_logprobs = 0;  // forces the host path for every step this request is in
            with_logprobs.push_back(r);
        }
        const std::vector<RequestOutput> a = run_concurrently(e, plain);
        const std::vector<RequestOutput> b = run_concurrently(e, with_logprobs);
        std::vector<GenerationRequest> mixed = {plain[0], with_logprobs[1], plain[2], with_logprobs[3]};
        const std::vector<RequestOutput> c = run_concurrently(e, mixed);
        for (size_t i = 0; i < 4; i++) {
            EXPECT_EQ(a[i].token_ids, b[i].token_ids) << kPrompts[i];
            EXPECT_EQ(a[i].token_ids, c[i].token_ids) << kPrompts[i];
            EXPECT_EQ(a[i].token_ids.size(), 24u);
        }
    }
}

TEST(EngineConfig, GpuMemoryUtilizationMustBeAFraction) {
    EngineConfig c;
    for (double bad : {0.0, -0.5, 1.5}) {
        c.gpu_memory_utilization = bad;
        EXPECT_THROW(c.validate(), Error) << bad;
    }
    c.gpu_memory_utilization = 0.5;
    EXPECT_NO_THROW(c.validate());
}

TEST(EngineConfig, TokenBudgetZeroMeansTheDevicesDefault) {
    EngineConfig c;
    c.max_num_batched_tokens = -1;
    EXPECT_THROW(c.validate(), Error);
    c.max_num_batched_tokens = 0;
    EXPECT_NO_THROW(c.validate());
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    EngineConfig z = small_config();
    z.max_num_batched_tokens = 0;
    Engine e(*L.m.model, *L.m.tokenizer, z);
    EXPECT_EQ(e.config().max_num_batched_tokens, 512);  // the CPU's default
    const std::vector<RequestOutput> out = generate_blocking(e, request("budget", kPrompts[0], 8));
    EXPECT_EQ(out[0].token_ids.size(), 8u);
}

// Penalties and logprobs are applied on the backend (BatchSampler); the Generator (osprey run) applies them in the
// host Sampler. Same model, same greedy steps: the same tokens, and the same logprobs, for requests batched with
// others.
TEST_P(EngineModes, PenaltiesAndLogprobsOnTheBackendEqualTheHostSampler) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    std::vector<GenerationRequest> reqs;
    for (int i = 0; i < 4; i++) {
        GenerationRequest r = request("q" + std::to_string(i), "The cat sat on the mat. The cat sat on the", 20);
        r.params.ignore_eos = true;
        if (i == 1) r.params.repetition_penalty = 1.3f;
        if (i == 2) r.params.presence_penalty = 0.4f, r.params.frequency_penalty = 0.6f, r.params.n_logprobs = 3;
        if (i == 3) r.params.repetition_penalty = 0.8f, r.params.frequency_penalty = -0.5f, r.params.n_logprobs = 0;
        reqs.push_back(r);
    }
    Engine e(*L.m.model, *L.m.tokenizer, small_config(GetParam()));
    const std::vector<RequestOutput> got = run_concurrently(e, reqs);
    Generator gen(*L.m.model, 256);
    for (size_t i = 0; i < reqs.size(); i++) {
        std::vector<SampledToken> want;
        gen.generate(reqs[i].prompt, reqs[i].params, 0, {}, [&](const SampledToken& t) {
            want.push_back(t);
            return true;
        });
        ASSERT_EQ(got[i].token_ids.size(), want.size()) << i;
        for (size_t j = 0; j < want.size(); j++) EXPECT_EQ(got[i].token_ids[j], want[j].token) << i << " " << j;
        if (reqs[i].params.n_logprobs < 0) continue;
        ASSERT_EQ(got[i].logprobs.size(), want.size()) << i;
        for (size_t j = 0; j < want.size(); j++) {
            EXPECT_NEAR(got[i].logprobs[j].logprob, want[j].logprob, 1e-6) << i << " " << j;
            ASSERT_EQ(got[i].logprobs[j].top.size(), want[j].top.size());
            for (size_t k = 0; k < want[j].top.size(); k++) {
                EXPECT_EQ(got[i].logprobs[j].top[k].token, want[j].top[k].token);
                EXPECT_NEAR(got[i].logprobs[j].top[k].logprob, want[j].top[k].logprob, 1e-6);
            }
        }
    }
    // The penalties changed something (else the comparison above proves little).
    EXPECT_NE(got[0].token_ids, got[1].token_ids);
    EXPECT_NE(got[0].token_ids, got[2].token_ids);
}

// Static batching (the benchmark baseline) runs a batch as one fixed-shape unit: a sequence that finishes keeps
// its row computing until the batch's longest one is done; each request still gets exactly its own answer, and
// every block comes back at the end.
TEST_P(EngineModes, StaticBatchesKeepFinishedRowsUntilTheBatchEnds) {
    SKIP_WITHOUT_MODEL();
    Loaded& L = shared_model();
    std::vector<GenerationRequest> reqs;
    const int lengths[4] = {4, 8, 16, 24};
    for (int i = 0; i < 4; i++) {
        reqs.push_back(request("s" + std::to_string(i), kPrompts[size_t(i)], lengths[i]));
        reqs.back().params.ignore_eos = true;
    }
    EngineConfig cont = small_config(GetParam()), stat = cont;
    cont.max_num_seqs = stat.max_num_seqs = 5;
    stat.scheduling = SchedulingPolicy::Static;
    // Each engine first gets a longer request and the four are submitted once it runs: a static batch forms only
    // when the engine is idle and takes every waiting request, so the four then make one batch whatever the
    // threads' timing (submitted one by one to an idle engine, a static batch could start with only some of them).
    GenerationRequest first = request("first", kPrompts[4], 40);
    first.params.ignore_eos = true;
    auto behind_first = [&](Engine& e) {
        auto f = std::async(std::launch::async, [&e, first] { return generate_blocking(e, first); });
        for (int i = 0; i < 2000 && e.stats().n_steps == 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::vector<RequestOutput> out = run_concurrently(e, reqs);
        f.get();
        return out;
    };
    Engine ec(*L.m.model, *L.m.tokenizer, cont);
    const std::vector<RequestOutput> a = behind_first(ec);
    Engine es(*L.m.model, *L.m.tokenizer, stat);
    const std::vector<RequestOutput> b = behind_first(es);
    for (size_t i = 0; i < reqs.size(); i++) {
        EXPECT_EQ(a[i].token_ids, b[i].token_ids) << i;
        EXPECT_EQ(b[i].n_completion_tokens, lengths[i]);
    }
    EXPECT_EQ(blocks_used_when_idle(es), 0);
    // Rows of decode-only steps: continuous computes each sequence's own (at most 39 for the first request and
    // 3 + 7 + 15 + 23 = 48 for the four, plus a dropped row per sequence with async scheduling); static also the
    // finished ones' rows until the longest of their batch is done ((23 - 3) + (23 - 7) + (23 - 15) = 44 more, or
    // more still for any of the four that joined the first request's batch; steps that still prefill a prompt are
    // not counted).
    const int64_t rows_c = ec.stats().decode_step_tokens, rows_s = es.stats().decode_step_tokens;
    EXPECT_LE(rows_c, 39 + 48 + 5);
    EXPECT_GE(rows_s, rows_c + 20) << rows_c << " " << rows_s;
}
