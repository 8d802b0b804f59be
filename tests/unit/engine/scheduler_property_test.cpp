// Property tests of the block allocator + scheduler, without a model: thousands of random add / step / abort /
// fork operations with a small pool (forcing preemption), while a shadow KV cache records which token each slot
// holds. After every step: the allocator's books balance, and every computed position of every running sequence
// reads back its own token through its block table (so no block is shared wrongly, copy-on-write and prefix reuse
// are right). At the end every block is free again.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>

#include "engine/scheduler.h"

using namespace osprey;
using namespace osprey::engine;

namespace {

struct Harness {
    EngineConfig config;
    std::unique_ptr<kv::BlockAllocator> blocks;
    std::unique_ptr<Scheduler> sched;
    std::map<int64_t, std::unique_ptr<Sequence>> seqs;
    std::vector<std::vector<int32_t>> shadow;  // [block][slot] token, -1 unwritten
    std::map<int64_t, int> target_len;
    std::mt19937 rng;
    int64_t next_id = 0;

    Harness(int n_blocks, int block_size, int max_seqs, int budget, bool prefix, uint32_t seed) : rng(seed) {
        config.block_size = block_size;
        config.max_num_seqs = max_seqs;
        config.max_num_batched_tokens = budget;
        config.enable_prefix_caching = prefix;
        blocks = std::make_unique<kv::BlockAllocator>(n_blocks);
        sched = std::make_unique<Scheduler>(config, *blocks);
        shadow.assign(size_t(n_blocks), std::vector<int32_t>(size_t(block_size), -1));
    }

    void add_random() {
        auto s = std::make_unique<Sequence>();
        s->seq_id = next_id++;
        s->arrival = s->seq_id;
        s->priority = int(rng() % 3 == 0);
        // Prompts from a few shared prefixes so the prefix cache gets hits.
        const int prefix_kind = int(rng() % 3);
        const int len = 1 + int(rng() % 70);
        for (int i = 0; i < len; i++) s->tokens.push_back(i < 40 ? prefix_kind * 1000 + i : int32_t(rng() % 500));
        s->n_prompt = len;
        s->width = rng() % 4 == 0 ? 2 + int(rng() % 2) : 1;  // parents of parallel samples
        s->fork_pending = s->width > 1;
        target_len[s->seq_id] = len + 1 + int(rng() % 30);
        sched->add(s.get());
        seqs.emplace(s->seq_id, std::move(s));
    }

    // Returns the parent and its new children (each then samples its own token, as in the engine).
    std::vector<Sequence*> fork(Sequence* p) {
        std::vector<Sequence*> family{p};
        if (!p->fork_pending) return family;
        const int n_children = p->width - 1;
        p->fork_pending = false;
        p->width = 1;
        for (int i = 0; i < n_children; i++) family.push_back(fork_one(p));
        return family;
    }

    Sequence* fork_one(Sequence* p) {
        auto c = std::make_unique<Sequence>();
        c->seq_id = next_id++;
        c->arrival = p->arrival;
        c->tokens = p->tokens;
        c->n_prompt = p->n_prompt;
        c->n_computed = p->n_computed;
        c->block_table = p->block_table;
        for (int32_t id : c->block_table) blocks->retain(id);
        c->n_hashed_blocks = p->n_hashed_blocks;
        c->last_hash = p->last_hash;
        target_len[c->seq_id] = target_len[p->seq_id];
        sched->add_running(c.get());
        Sequence* raw = c.get();
        seqs.emplace(c->seq_id, std::move(c));
        return raw;
    }

    void finish(Sequence* s) {
        sched->finish(s);
        target_len.erase(s->seq_id);
        seqs.erase(s->seq_id);
    }

    void step() {
        const StepPlan plan = sched->schedule();
        for (const auto& [src, dst] : plan.block_copies) shadow[size_t(dst)] = shadow[size_t(src)];
        int n_tokens = 0;
        for (const ScheduledSeq& s : plan.seqs) {
            ASSERT_GT(s.n_new, 0);
            n_tokens += s.n_new;
            const int bs = config.block_size;
            for (int p = s.seq->n_computed; p < s.seq->n_computed + s.n_new; p++) {
                ASSERT_LT(size_t(p / bs), s.seq->block_table.size());
                shadow[size_t(s.seq->block_table[size_t(p / bs)])][size_t(p % bs)] = s.seq->tokens[size_t(p)];
            }
        }
        ASSERT_LE(n_tokens, config.max_num_batched_tokens);
        ASSERT_LE(sched->n_running_slots(), config.max_num_seqs);
        sched->commit(plan);
        std::vector<Sequence*> sampled;
        for (const ScheduledSeq& s : plan.seqs)
            if (s.sample) sampled.push_back(s.seq);
        for (Sequence* parent : sampled) {
            for (Sequence* s : fork(parent)) {  // like the engine: a parent forks at its first sample
                s->tokens.push_back(int32_t(rng() % 500));
                if (s->n_tokens() >= target_len[s->seq_id]) finish(s);
            }
        }
        check();
    }

    void check() {
        blocks->check_invariants();
        for (Sequence* s : sched->running()) {
            for (int p = 0; p < s->n_computed; p++) {
                const int32_t b = s->block_table[size_t(p / config.block_size)];
                ASSERT_EQ(shadow[size_t(b)][size_t(p % config.block_size)], s->tokens[size_t(p)])
                    << "sequence " << s->seq_id << " position " << p << " reads another sequence's KV";
            }
        }
    }
};

}  // namespace

TEST(SchedulerProperty, RandomWorkloadsKeepBlocksConsistent) {
    for (uint32_t seed = 1; seed <= 20; seed++) {
        const bool prefix = seed % 2 == 0;
        // The pool always holds one longest sequence (101 tokens), as the engine guarantees at admission.
        const int block_size = seed % 3 == 0 ? 4 : 16;
        Harness h(/*n_blocks=*/(110 + block_size - 1) / block_size + int(seed % 5) * 4, block_size, /*max_seqs=*/8,
                  /*budget=*/32 + int(seed % 4) * 40, prefix, seed);
        for (int op = 0; op < 600; op++) {
            const int r = int(h.rng() % 10);
            if (r < 3 && h.seqs.size() < 30) h.add_random();
            else if (r < 4 && !h.seqs.empty()) {
                auto it = h.seqs.begin();
                std::advance(it, long(h.rng() % h.seqs.size()));
                h.finish(it->second.get());  // abort
                h.check();
            } else h.step();
            if (::testing::Test::HasFatalFailure()) return;
        }
        // Drain: everything finishes, then no block may remain in use.
        for (int i = 0; i < 5000 && h.sched->has_work(); i++) {
            h.step();
            if (::testing::Test::HasFatalFailure()) return;
        }
        EXPECT_FALSE(h.sched->has_work()) << "seed " << seed << ": work left (starvation or deadlock)";
        EXPECT_EQ(h.blocks->n_used_blocks(), 0) << "seed " << seed << ": blocks leaked";
        if (prefix) EXPECT_GT(h.sched->counters().prefix_hits, 0) << "seed " << seed;
    }
}

TEST(SchedulerProperty, PoolTooSmallPreemptsInsteadOfFailing) {
    Harness h(/*n_blocks=*/8, /*block_size=*/16, /*max_seqs=*/8, /*budget=*/256, /*prefix=*/false, 3);
    for (int i = 0; i < 6; i++) h.add_random();
    for (int i = 0; i < 5000 && h.sched->has_work(); i++) {
        h.step();
        ASSERT_FALSE(::testing::Test::HasFatalFailure());
    }
    EXPECT_FALSE(h.sched->has_work());
    EXPECT_GT(h.sched->counters().n_preemptions, 0);
    EXPECT_EQ(h.blocks->n_used_blocks(), 0);
}

TEST(SchedulerProperty, ChunkedPrefillRespectsTheBudgetAndMixesDecodes) {
    Harness h(/*n_blocks=*/64, /*block_size=*/16, /*max_seqs=*/4, /*budget=*/20, /*prefix=*/false, 9);
    auto add = [&](int len) {
        auto s = std::make_unique<Sequence>();
        s->seq_id = h.next_id++;
        s->arrival = s->seq_id;
        for (int i = 0; i < len; i++) s->tokens.push_back(i);
        s->n_prompt = len;
        h.target_len[s->seq_id] = len + 50;
        h.sched->add(s.get());
        h.seqs.emplace(s->seq_id, std::move(s));
    };
    add(3);
    h.step();  // short prompt prefilled at once, now decoding
    add(100);  // long prompt: chunks of at most 19 tokens next to the decode
    for (int i = 0; i < 5; i++) {
        const StepPlan plan = h.sched->schedule();
        int decodes = 0, chunk = 0;
        for (const ScheduledSeq& s : plan.seqs) (s.seq->seq_id == 0 ? decodes : chunk) += s.n_new;
        EXPECT_EQ(decodes, 1) << "the running stream must not stall behind the long prompt";
        EXPECT_EQ(chunk, 19);
        h.sched->commit(plan);
        for (const ScheduledSeq& s : plan.seqs)
            if (s.sample) s.seq->tokens.push_back(1);
    }
}
