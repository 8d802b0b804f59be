// Scheduler: iteration-level (continuous) batching over the paged KV pool.
//
// Each call to schedule() builds one step's plan: every running sequence gets the tokens it still needs (a decode
// token, or a prompt chunk) within the token budget, in admission order; then, if nothing was preempted, waiting
// sequences join (priority, then FCFS) while max_num_seqs, the budget and free blocks allow. Admission first reuses
// cached prefix blocks. When blocks run out, the newest running sequence is preempted: its blocks are released (they
// stay in the prefix cache until evicted) and it waits to be recomputed. Static batching (the baseline) fills a
// batch, then admits nothing until every sequence of it has finished; a finished sequence keeps computing as a
// padding row (Sequence::padding) until then, the cost a fixed-shape batch pays. Host-only; single-threaded.
#pragma once

#include <deque>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/sequence.h"
#include "kv/block_allocator.h"

namespace osprey::engine {

struct ScheduledSeq {
    Sequence* seq = nullptr;
    int n_new = 0;        // tokens computed this step, from seq->n_computed
    bool sample = false;  // the step reaches the sequence's last token: sample from its logits
};

struct StepPlan {
    std::vector<ScheduledSeq> seqs;
    std::vector<std::pair<int32_t, int32_t>> block_copies;  // (src, dst) copy-on-write before the step
    std::vector<Sequence*> preempted;
    std::vector<Sequence*> released;  // padding rows dropped (static batching): finished, their blocks freed
    int n_tokens = 0;
    bool empty() const { return seqs.empty(); }
};

struct SchedulerCounters {
    int64_t n_preemptions = 0;
    int64_t prefix_queries = 0;  // prompt tokens looked up in the prefix cache
    int64_t prefix_hits = 0;     // of those, found cached
};

class Scheduler {
  public:
    Scheduler(const EngineConfig& config, kv::BlockAllocator& blocks);

    void add(Sequence* seq);      // a new (or forked) sequence joins: waiting, or running when already computed
    void add_running(Sequence* seq);
    void finish(Sequence* seq);   // leaves the queues and releases its blocks (finished or aborted)
    StepPlan schedule();
    // After the step ran: advances n_computed and registers newly full blocks in the prefix cache.
    void commit(const StepPlan& plan);

    int n_waiting() const { return int(waiting_.size()); }
    int n_running() const { return int(running_.size()); }
    int n_running_slots() const;  // sum of running sequences' widths (a parent of n forks counts n)
    bool has_work() const { return !waiting_.empty() || !running_.empty(); }
    const std::vector<Sequence*>& running() const { return running_; }
    const SchedulerCounters& counters() const { return counters_; }

  private:
    // Makes the block table cover n_computed + n_new tokens, copy-on-write for a shared last block.
    bool reserve_blocks(Sequence* seq, int n_new, StepPlan& plan);
    void preempt(Sequence* seq, StepPlan& plan);
    void release_blocks(Sequence* seq);
    int apply_prefix_cache(Sequence* seq);  // returns tokens found cached
    void insert_waiting(Sequence* seq);

    EngineConfig config_;
    kv::BlockAllocator& blocks_;
    std::deque<Sequence*> waiting_;
    std::vector<Sequence*> running_;
    SchedulerCounters counters_;
};

}  // namespace osprey::engine
