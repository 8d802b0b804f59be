#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace osprey::engine {

Scheduler::Scheduler(const EngineConfig& config, kv::BlockAllocator& blocks) : config_(config), blocks_(blocks) {}

void Scheduler::insert_waiting(Sequence* seq) {
    seq->status = SeqStatus::Waiting;
    // Ordered by priority (lower runs first), then arrival: a preempted sequence regains its original place.
    auto before = [](const Sequence* a, const Sequence* b) {
        return a->priority != b->priority ? a->priority < b->priority : a->arrival < b->arrival;
    };
    waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), seq, before), seq);
}

void Scheduler::add(Sequence* seq) { insert_waiting(seq); }

int Scheduler::n_running_slots() const {
    int n = 0;
    for (const Sequence* s : running_) n += s->width;
    return n;
}

void Scheduler::add_running(Sequence* seq) {
    seq->status = SeqStatus::Running;
    running_.push_back(seq);
}

void Scheduler::release_blocks(Sequence* seq) {
    for (int32_t id : seq->block_table) blocks_.release(id);
    seq->block_table.clear();
    seq->n_hashed_blocks = 0;
    seq->last_hash = kv::kNoParentHash;
}

void Scheduler::finish(Sequence* seq) {
    running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), seq), waiting_.end());
    release_blocks(seq);
    seq->status = SeqStatus::Finished;
}

void Scheduler::preempt(Sequence* seq, StepPlan& plan) {
    if (seq->padding) {  // nothing to recompute: a padding row just ends
        finish(seq);
        plan.released.push_back(seq);
        return;
    }
    running_.erase(std::remove(running_.begin(), running_.end(), seq), running_.end());
    release_blocks(seq);
    seq->n_computed = 0;
    seq->n_preemptions++;
    counters_.n_preemptions++;
    insert_waiting(seq);
    plan.preempted.push_back(seq);
}

bool Scheduler::reserve_blocks(Sequence* seq, int n_new, StepPlan& plan) {
    const int bs = config_.block_size;
    // Copy-on-write: the block receiving the first new token must not be shared (forks share a partial block).
    const int first_block = seq->n_computed / bs;
    const bool cow = first_block < int(seq->block_table.size()) && blocks_.ref_count(seq->block_table[size_t(first_block)]) > 1;
    const int need = (seq->n_computed + n_new + bs - 1) / bs - int(seq->block_table.size()) + (cow ? 1 : 0);
    if (need > 0 && !blocks_.can_allocate(need)) return false;
    if (cow) {
        std::vector<int32_t> fresh;
        blocks_.allocate(1, fresh);
        const int32_t old = seq->block_table[size_t(first_block)];
        plan.block_copies.emplace_back(old, fresh[0]);
        blocks_.release(old);
        seq->block_table[size_t(first_block)] = fresh[0];
    }
    const int more = (seq->n_computed + n_new + bs - 1) / bs - int(seq->block_table.size());
    if (more > 0) blocks_.allocate(more, seq->block_table);
    return true;
}

int Scheduler::apply_prefix_cache(Sequence* seq) {
    if (!config_.enable_prefix_caching || seq->n_computed != 0) return 0;
    const int bs = config_.block_size;
    // At least the last token is recomputed: its logits are needed.
    const int n_full = (seq->n_tokens() - 1) / bs;
    kv::BlockHash h = kv::kNoParentHash;
    int hits = 0;
    for (int b = 0; b < n_full; b++) {
        h = kv::block_hash(h, std::span<const int32_t>(seq->tokens.data() + size_t(b) * bs, size_t(bs)));
        const int32_t id = blocks_.find_cached(h);
        if (id < 0) break;
        blocks_.acquire_cached(id);
        seq->block_table.push_back(id);
        seq->n_hashed_blocks = b + 1;
        seq->last_hash = h;
        hits++;
    }
    seq->n_computed = hits * bs;
    return hits * bs;
}

StepPlan Scheduler::schedule() {
    StepPlan plan;
    int budget = config_.max_num_batched_tokens;
    // A static batch whose sequences have all finished ends: its padding rows go, the next batch is admitted.
    if (!running_.empty() &&
        std::all_of(running_.begin(), running_.end(), [](const Sequence* s) { return s->padding; })) {
        const std::vector<Sequence*> done = running_;
        for (Sequence* s : done) finish(s), plan.released.push_back(s);
    }
    const bool was_idle = running_.empty();

    // Running sequences first, oldest first.
    for (size_t i = 0; i < running_.size() && budget > 0;) {
        Sequence* seq = running_[i];
        const int n_new = std::min(seq->n_uncomputed(), budget);
        if (n_new <= 0) {
            i++;
            continue;
        }
        // Out of blocks: preempt the newest running sequence (possibly this one) until the reservation fits.
        // Victims come from the back, so sequences already scheduled this step (the front) are never taken.
        bool self_preempted = false;
        while (!self_preempted && !reserve_blocks(seq, n_new, plan)) {
            Sequence* victim = running_.back();
            preempt(victim, plan);
            self_preempted = victim == seq;
        }
        if (self_preempted) break;
        plan.seqs.push_back({seq, n_new, seq->n_computed + n_new == seq->n_tokens()});
        plan.n_tokens += n_new;
        budget -= n_new;
        i++;
    }

    // Then waiting sequences, unless this step had to preempt (the pool is full).
    const bool admit = plan.preempted.empty() &&
                       (config_.scheduling == SchedulingPolicy::Continuous || was_idle);
    const bool fill_batch = config_.scheduling == SchedulingPolicy::Static;
    int slots = n_running_slots();
    while (admit && !waiting_.empty() && (budget > 0 || fill_batch)) {
        Sequence* seq = waiting_.front();
        if (slots + seq->width > config_.max_num_seqs) break;
        const int cached = apply_prefix_cache(seq);
        int n_new = std::min(seq->n_uncomputed(), budget);
        // Static batching admits a sequence only if its whole prompt fits now (it must run to completion).
        const int reserve_for = fill_batch ? seq->n_uncomputed() : n_new;
        StepPlan tentative;
        if (!reserve_blocks(seq, reserve_for, tentative)) {
            release_blocks(seq);
            seq->n_computed = 0;
            break;
        }
        plan.block_copies.insert(plan.block_copies.end(), tentative.block_copies.begin(), tentative.block_copies.end());
        waiting_.pop_front();
        add_running(seq);
        slots += seq->width;
        counters_.prefix_queries += seq->n_tokens();
        counters_.prefix_hits += cached;
        seq->n_cached_prompt = std::min(cached, seq->n_prompt);
        if (n_new == 0) continue;  // static batching: admitted now, computed in later steps
        plan.seqs.push_back({seq, n_new, seq->n_computed + n_new == seq->n_tokens()});
        plan.n_tokens += n_new;
        budget -= n_new;
    }
    return plan;
}

void Scheduler::commit(const StepPlan& plan) {
    const int bs = config_.block_size;
    for (const ScheduledSeq& s : plan.seqs) {
        Sequence* seq = s.seq;
        if (seq->status == SeqStatus::Finished) continue;  // stopped (or aborted) while the step ran
        seq->n_computed += s.n_new;
        if (!config_.enable_prefix_caching) continue;
        // Register blocks that became full (their tokens are all computed).
        const int n_full = seq->n_computed / bs;
        while (seq->n_hashed_blocks < n_full) {
            const int b = seq->n_hashed_blocks;
            seq->last_hash = kv::block_hash(seq->last_hash, std::span<const int32_t>(seq->tokens.data() + size_t(b) * bs, size_t(bs)));
            blocks_.set_hash(seq->block_table[size_t(b)], seq->last_hash);
            seq->n_hashed_blocks++;
        }
    }
}

}  // namespace osprey::engine
