// ThreadPool: a fixed set of worker threads that run one parallel-for at a time (fork/join).
// The calling thread takes part, so a pool of n threads starts n - 1 workers.
// Work is split into n_threads contiguous chunks by index, so a given index always lands in the same chunk
// for a given n (deterministic partitioning). Not re-entrant: call parallel_for from one thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace osprey {

class ThreadPool {
  public:
    explicit ThreadPool(int n_threads);  // n_threads <= 0: the number of cores
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }

    // fn(idx, n_threads) once for every idx in [0, n_threads); the callee splits the work by idx. Shares are
    // claimed, not assigned: the caller runs share 0 (or whichever it claims first) and then any share no worker has
    // started, so a worker the OS has not scheduled yet (a machine busy with other processes) does not stall the
    // job. Which thread runs a share must not change its result.
    void run(const std::function<void(int, int)>& fn);

    // fn(begin, end) over [0, n) in contiguous chunks, each a multiple of `grain` (except the last).
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

    // fn(chunk) for every chunk in [0, n_chunks): each thread owns one contiguous run of chunks and works through
    // it from the front (so memory streams stay sequential); a thread that finishes early takes chunks from the
    // back of the run with the most left. Which thread runs a chunk must not change its result.
    void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& fn);

  private:
    void worker_loop();
    void run_shares(uint32_t job);  // claims and runs shares of job `job` until none is left

    int n_threads_;
    struct alignas(64) ChunkRun {  // parallel_chunks' per-thread run of chunks, reused across calls
        std::atomic<uint64_t> range{0};
    };
    std::vector<ChunkRun> chunk_runs_;
    std::vector<std::thread> workers_;
    const std::function<void(int, int)>* job_ = nullptr;  // published by the claim_ store
    uint32_t job_number_ = 0;              // the caller's count of jobs
    std::atomic<uint64_t> claim_{0};       // (job number << 32) | the next unclaimed share; workers wait on it
    std::atomic<int> done_{0};             // shares of the current job finished
    std::atomic<int> n_sleeping_{0};       // workers blocked in claim_.wait
    std::atomic<bool> caller_sleeping_{false};
    std::atomic<bool> stop_{false};
};

}  // namespace osprey
