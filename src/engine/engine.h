// Engine: the serving core. Owns the model runner, the paged KV pool (with prefix caching) and the scheduler, all on
// ONE engine thread (no locks inside); other threads talk to it only through submit()/abort()/stats().
//
// Every step: finished sequences leave, waiting ones join (continuous batching within max_num_seqs and the token
// budget), long prompts are prefilled in chunks mixed with running decodes, and when KV blocks run out the newest
// running sequence is preempted (its blocks freed, recomputed later).
//
// Outputs stream back through the request's callback, called on the engine thread: it must not block (post the
// event to your own thread or queue). The last event of each of a request's n choices has `finished` set.
// This header is the engine's public API: the server, the benchmarks and the CLI use nothing else from engine/.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "engine/sampler.h"
#include "engine/sampling_params.h"

namespace osprey::tokenizer {
class Tokenizer;
}
namespace osprey::model {
class Model;
}

namespace osprey::engine {

enum class SchedulingPolicy { Continuous, Static };  // static: fill a batch, run it to completion (baseline only)
// Async scheduling: while the device runs step N, the engine thread schedules and launches step N+1 (its decode
// inputs are the ids step N draws, fed on the device) and only then waits for step N's ids and emits them. A
// sequence that stops at step N has computed one token too many in step N+1, which is dropped. Auto: on for a
// device backend, off on the CPU (whose ops run synchronously: nothing to overlap).
enum class AsyncScheduling { Auto, On, Off };
const char* async_scheduling_name(AsyncScheduling a);  // "auto", "on", "off"
// Tokens per step when none is given: 512 on the CPU (its products are as fast at 512 rows and its steps stay short),
// 8192 on a GPU (vLLM's default on data-centre GPUs: large steps keep prefill GEMMs efficient).
int default_max_num_batched_tokens(Device device);

struct EngineConfig {
    int max_num_seqs = 64;              // running sequences at once
    int max_num_batched_tokens = 512;   // tokens per step (prefill chunks + decodes); 0: 512 on the CPU, 8192 on a GPU
    int max_model_len = 0;              // 0: the model's context length
    int block_size = 16;                // tokens per KV block
    DType kv_dtype = DType::F32;        // KV cache element type (F32 or F16; the CLI's auto picks F16)
    size_t kv_cache_bytes = 0;          // KV pool budget; 0: auto (on the CPU: 2 GiB, at least one max_model_len
                                        // sequence, at most half the machine's memory; on a GPU: see below)
    double gpu_memory_utilization = 0.9;  // GPU: the share of device memory this engine may hold in all (weights,
                                          // activations and the KV pool); the pool gets what is left of it
    bool enable_prefix_caching = true;
    SchedulingPolicy scheduling = SchedulingPolicy::Continuous;
    AsyncScheduling async_scheduling = AsyncScheduling::Auto;
    int max_waiting_requests = 1024;    // admission queue limit: submit() beyond it is rejected (HTTP 429)
    int max_n = 16;                     // parallel samples per request

    // Throws Error(InvalidArgument) naming the bad field.
    void validate() const;
};

enum class FinishReason { None, Stop, Length, Abort, Error };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "abort", "error"

struct GenerationRequest {
    std::string request_id;        // unique among live requests
    std::vector<int32_t> prompt;   // token ids (chat templates are applied by the caller)
    SamplingParams params;         // params.stop holds stop strings; matched on the detokenized text
    std::vector<int32_t> stop_token_ids;  // extra stop ids (besides the model's EOS unless ignore_eos)
    int n = 1;                     // parallel samples; they share the prompt's KV blocks
    int priority = 0;              // lower runs first; FCFS within a priority
    bool skip_special_tokens = true;
};

// One streamed event for choice `index` of a request.
struct RequestOutput {
    std::string request_id;
    int index = 0;
    std::vector<int32_t> token_ids;         // tokens new in this event
    std::string text;                       // text new in this event (stop strings and held-back bytes excluded)
    std::vector<SampledToken> logprobs;     // one per new token when the request asked for logprobs
    bool finished = false;
    FinishReason finish_reason = FinishReason::None;
    std::string error;                      // when finish_reason == Error
    // Usage, filled on the finished event.
    int n_prompt_tokens = 0;
    int n_completion_tokens = 0;            // this choice's tokens
    int n_cached_prompt_tokens = 0;         // prompt tokens served from the prefix cache
};

using OutputCallback = std::function<void(const RequestOutput&)>;

// A consistent snapshot for /metrics and logs (counters are totals since start).
struct EngineStats {
    int n_waiting = 0;
    int n_running = 0;
    int n_kv_blocks = 0;
    int n_kv_blocks_used = 0;
    int64_t n_prompt_tokens = 0;
    int64_t n_generation_tokens = 0;
    int64_t n_preemptions = 0;
    int64_t prefix_cache_queries = 0;  // prompt tokens looked up
    int64_t prefix_cache_hits = 0;     // prompt tokens found cached
    int64_t n_steps = 0;
    int64_t n_overlapped_steps = 0;    // steps launched before the previous step's ids were read (async scheduling)
    int64_t n_decode_steps = 0;        // steps in which every scheduled sequence decoded one token
    int64_t decode_step_tokens = 0;    // tokens those steps produced
    double decode_step_seconds = 0;    // wall time of those steps (forward, sampling, outputs)
    int64_t n_requests_finished = 0;
    int64_t kv_slots_allocated = 0;    // token slots in blocks held by running sequences (sampled each step)
    int64_t kv_slots_used = 0;         // of those, slots holding a token
    int kv_tokens_capacity = 0;
};

class Engine {
  public:
    // The model and tokenizer must outlive the engine. Starts the engine thread. Throws Error(OutOfMemory) when the KV
    // budget cannot hold one max_model_len sequence.
    Engine(model::Model& model, const tokenizer::Tokenizer& tokenizer, const EngineConfig& config);
    ~Engine();  // stops the thread; unfinished requests get FinishReason::Abort
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Validates and queues a request. Throws Error(InvalidArgument) for bad params, Error(ContextOverflow) when the
    // prompt plus max_tokens exceeds max_model_len, Error(OutOfMemory) when the admission queue is full.
    void submit(GenerationRequest request, OutputCallback on_output);
    // Aborts a request (client gone): its blocks are freed at the next step. Unknown ids are ignored.
    void abort(const std::string& request_id);

    EngineStats stats() const;
    const EngineConfig& config() const;
    int max_model_len() const;
    int kv_tokens_capacity() const;   // tokens that fit in the KV pool
    bool healthy() const;             // false after an internal error on the engine thread

    // Stops accepting requests; waits up to timeout_s for running ones to finish, then aborts the rest.
    void drain(double timeout_s);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Blocking convenience for tests and the CLI: runs one request to completion and returns each choice's outputs
// merged (all token ids, text and logprobs; finish reason and usage from the finished event).
std::vector<RequestOutput> generate_blocking(Engine& engine, GenerationRequest request);

}  // namespace osprey::engine
