#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace osprey {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#else
    std::this_thread::yield();
#endif
}
// Waiters spin this many rounds before sleeping on a futex: decode steps issue a few hundred parallel sections per
// token some tens of microseconds apart, and a wake-up per section would dominate. About 60 us on current x86; every
// 64th round yields the core, so a waiter never starves the thread it waits for when the machine is oversubscribed.
constexpr int kSpinRounds = 4096;

template <class Pred>
bool spin_until(Pred done) {
    for (int i = 0; i < kSpinRounds; i++) {
        if (done()) return true;
        if ((i & 63) == 63) std::this_thread::yield();
        else cpu_relax();
    }
    return done();
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    n_threads_ = n_threads;
    chunk_runs_ = std::vector<ChunkRun>(static_cast<size_t>(n_threads_));
    for (int i = 1; i < n_threads_; i++) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true, std::memory_order_seq_cst);
    // A job number no worker has seen, with no share left to claim: wakes every worker, which then stops.
    claim_.store((uint64_t(job_number_ + 1) << 32) | uint32_t(n_threads_), std::memory_order_seq_cst);
    claim_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop() {
    uint32_t seen = 0;  // the last job this worker took part in (job numbers start at 1)
    auto current = [&] { return uint32_t(claim_.load(std::memory_order_acquire) >> 32); };
    for (;;) {
        if (!spin_until([&] { return current() != seen; })) {
            n_sleeping_.fetch_add(1, std::memory_order_seq_cst);
            // Woken by run()'s notify; a share claimed meanwhile changes claim_ too (a spurious wake-up, looped on).
            for (uint64_t v; uint32_t((v = claim_.load(std::memory_order_seq_cst)) >> 32) == seen;)
                claim_.wait(v, std::memory_order_seq_cst);
            n_sleeping_.fetch_sub(1, std::memory_order_seq_cst);
        }
        if (stop_.load(std::memory_order_acquire)) return;
        // The job current now (a later one than the one that woke this worker, if it was slow: it helps with that).
        seen = current();
        run_shares(seen);
    }
}

void ThreadPool::run_shares(uint32_t job) {
    for (;;) {
        uint64_t v = claim_.load(std::memory_order_acquire);
        if (uint32_t(v >> 32) != job || uint32_t(v) >= uint32_t(n_threads_)) return;
        if (!claim_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        // The claim succeeded while `job` was current, so job_ is its function (the caller replaces job_ only
        // after every share of it is done) and stays alive until this share is counted.
        (*job_)(int(uint32_t(v)), n_threads_);
        if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n_threads_ &&
            caller_sleeping_.load(std::memory_order_seq_cst))
            done_.notify_one();
    }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    job_ = &fn;
    done_.store(0, std::memory_order_relaxed);
    const uint32_t job = ++job_number_;
    claim_.store(uint64_t(job) << 32, std::memory_order_seq_cst);  // publishes job_ and done_; wakes the workers
    if (n_sleeping_.load(std::memory_order_seq_cst) > 0) claim_.notify_all();
    run_shares(job);
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == n_threads_; })) {
        caller_sleeping_.store(true, std::memory_order_seq_cst);
        for (int v; (v = done_.load(std::memory_order_seq_cst)) != n_threads_;) done_.wait(v, std::memory_order_seq_cst);
        caller_sleeping_.store(false, std::memory_order_relaxed);
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t n_chunks = (n + grain - 1) / grain;
    const int n_used = int(std::min<int64_t>(n_chunks, n_threads_));
    if (n_used <= 1) {
        fn(0, n);
        return;
    }
    run([&](int idx, int) {
        if (idx >= n_used) return;
        const int64_t c0 = n_chunks * idx / n_used, c1 = n_chunks * (idx + 1) / n_used;
        const int64_t b = c0 * grain, e = std::min(n, c1 * grain);
        if (b < e) fn(b, e);
    });
}

void ThreadPool::parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& fn) {
    if (n_chunks <= 0) return;
    if (n_threads_ == 1 || n_chunks == 1) {
        for (int64_t c = 0; c < n_chunks; c++) fn(c);
        return;
    }
    // Run t is [front, back) packed in one 64-bit word (front low, back high) so owner and thieves claim with CAS.
    std::vector<ChunkRun>& runs = chunk_runs_;
    for (int t = 0; t < n_threads_; t++) {
        const uint64_t b = uint64_t(n_chunks * t / n_threads_), e = uint64_t(n_chunks * (t + 1) / n_threads_);
        runs[size_t(t)].range.store(b | (e << 32), std::memory_order_relaxed);
    }
    auto claim = [](std::atomic<uint64_t>& r, bool from_front) -> int64_t {
        uint64_t v = r.load(std::memory_order_relaxed);
        for (;;) {
            const uint64_t f = v & 0xffffffffu, b = v >> 32;
            if (f >= b) return -1;
            const uint64_t nv = from_front ? ((f + 1) | (b << 32)) : (f | ((b - 1) << 32));
            if (r.compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed))
                return int64_t(from_front ? f : b - 1);
        }
    };
    run([&](int t, int n) {
        for (int64_t c; (c = claim(runs[size_t(t)].range, true)) >= 0;) fn(c);
        for (;;) {  // steal from the run with the most chunks left
            int victim = -1;
            uint64_t most = 0;
            for (int u = 0; u < n; u++) {
                const uint64_t v = runs[size_t(u)].range.load(std::memory_order_relaxed);
                const uint64_t left = (v >> 32) > (v & 0xffffffffu) ? (v >> 32) - (v & 0xffffffffu) : 0;
                if (left > most) most = left, victim = u;
            }
            if (victim < 0) return;
            const int64_t c = claim(runs[size_t(victim)].range, false);
            if (c >= 0) fn(c);
        }
    });
}

}  // namespace osprey
