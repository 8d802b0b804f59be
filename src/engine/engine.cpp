#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <unistd.h>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "engine/batch_sampler.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/paged_kv_cache.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace osprey::engine {

void EngineConfig::validate() const {
    auto bad = [](const char* field, const std::string& why) { raise(ErrorCode::InvalidArgument, "{} {}", field, why); };
    if (max_num_seqs < 1) bad("--max-num-seqs", "must be at least 1");
    if (max_num_batched_tokens < 0) bad("--max-num-batched-tokens", "must be at least 1 (0: the device's default)");
    if (!(gpu_memory_utilization > 0.0 && gpu_memory_utilization <= 1.0))
        bad("--gpu-memory-utilization", "must be in (0, 1]");
    if (max_model_len < 0) bad("--max-model-len", "must not be negative");
    if (block_size < 1 || block_size > 1024 || (block_size & (block_size - 1)) != 0)
        bad("--block-size", "must be a power of two in [1, 1024]");
    if (max_waiting_requests < 1) bad("--max-waiting", "must be at least 1");
    if (max_n < 1) bad("max n", "must be at least 1");
}

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
        case FinishReason::None: return "";
        case FinishReason::Stop: return "stop";
        case FinishReason::Length: return "length";
        case FinishReason::Abort: return "abort";
        case FinishReason::Error: return "error";
    }
    return "";
}

int default_max_num_batched_tokens(Device device) { return device == Device::Cpu ? 512 : 8192; }

const char* async_scheduling_name(AsyncScheduling a) {
    switch (a) {
        case AsyncScheduling::Auto: return "auto";
        case AsyncScheduling::On: return "on";
        case AsyncScheduling::Off: return "off";
    }
    return "";
}

// What a request's sequences share.
struct RequestState {
    GenerationRequest request;
    OutputCallback on_output;
    uint64_t seed = 0;
    int n_live = 0;  // sequences not yet finished (the parent counts as n until it forks)
    std::vector<Sequence*> seqs;
};

namespace {

constexpr int32_t kPendingToken = -1;  // a token drawn on the device, not read back yet

uint64_t mix_seed(uint64_t seed, uint64_t index) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

kv::KvCacheShape kv_shape(const model::ModelConfig& c, int block_size, DType kv_dtype) {
    return kv::KvCacheShape{c.n_layers, c.n_kv_heads, c.head_dim, block_size, kv_dtype};
}

}  // namespace

struct Engine::Impl {
    model::Model& model;
    const tokenizer::Tokenizer& tokenizer;
    EngineConfig config;
    int max_model_len = 0;
    std::unique_ptr<kv::PagedKvCache> kv_cache;
    std::unique_ptr<kv::BlockAllocator> blocks;
    std::unique_ptr<Scheduler> scheduler;

    // Shared with other threads (under mutex).
    mutable std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::shared_ptr<RequestState>> incoming;
    std::vector<std::string> aborts;
    int n_queued = 0;  // incoming + waiting, for admission control
    bool stopping = false;
    bool accepting = true;
    bool healthy = true;
    EngineStats stats;

    // Engine thread only.
    std::unordered_map<std::string, std::shared_ptr<RequestState>> requests;
    std::map<int64_t, std::unique_ptr<Sequence>> seqs;
    int64_t next_seq_id = 0;
    int64_t next_arrival = 0;
    std::vector<float> host_row;
    std::vector<float> host_logits;  // this step's sampled rows [n_rows, n_vocab] (when a parent forks)
    BatchSampler batch_sampler;
    std::vector<DrawRow> draw_rows;
    std::vector<int32_t> host_ids;
    // Async scheduling (EngineConfig::async_scheduling): the step launched last whose ids are not read yet.
    struct InflightStep {
        uint64_t id = 0;
        std::vector<std::pair<Sequence*, int>> rows;  // per sampled row: the sequence and its placeholder's index
        uint64_t ticket = 0;                          // the readback of its ids
        int buf = 0;                                  // step_ids buffer holding them
    };
    bool async = false;
    std::optional<InflightStep> inflight;
    backend::Buffer step_ids[2];  // ids drawn by the last two launched steps (alternating)
    uint64_t n_launched = 0, n_processed = 0;
    // Finished sequences a launched step may still name: freed once step `first` is processed.
    std::vector<std::pair<uint64_t, std::unique_ptr<Sequence>>> retired;
    std::mt19937_64 seed_source{std::random_device{}()};
    std::thread thread;

    Impl(model::Model& m, const tokenizer::Tokenizer& t, const EngineConfig& c)
        : model(m), tokenizer(t), config(c), batch_sampler(m.backend()) {}

    void loop();
    void step();
    void admit(std::shared_ptr<RequestState> req);
    void abort_request(const std::string& id, FinishReason reason, const std::string& error = "");
    void finish_seq(Sequence* seq, FinishReason reason, const std::string& error = "");
    void sample_and_emit(Sequence* seq, std::span<float> logits);
    // Appends tok to seq (index < 0) or fills placeholder tokens[index], then streams it and finishes seq if it stops.
    void emit(Sequence* seq, const SampledToken& tok, int index = -1);
    void process_inflight();  // waits for the in-flight step's ids and emits them
    void retire(Sequence* seq);
    void free_retired();
    void fork(Sequence* parent);
    void publish_stats();
    void publish_occupancy();  // queue lengths and KV blocks in use, before a finished event goes out
    void warm_up();            // GPU only, before the loop starts (see the definition)
};

// On a GPU, before serving: one forward pass of a full step of dummy tokens, one decode step and a greedy draw,
// so that every kernel is loaded (lazy module loading), cuBLAS has picked its kernels and the batch-1 decode graph
// exists before the first request, whose TTFT would pay for them otherwise. The blocks go back unhashed: nothing
// is cached, counted or scheduled.
void Engine::Impl::warm_up() {
    backend::Backend& be = model.backend();
    if (be.device() == Device::Cpu) return;
    const auto t0 = std::chrono::steady_clock::now();
    const int bs = config.block_size;
    const int n = std::max(1, std::min(config.max_num_batched_tokens, max_model_len - 1));
    std::vector<int32_t> table;
    if (!blocks->allocate((n + 1 + bs - 1) / bs, table)) return;
    const std::vector<int32_t> tokens(size_t(n), 0);
    model::StepInput prefill;
    prefill.add_sequence(tokens, 0, table, bs, model::StepInput::Logits::Last);
    model.forward(prefill, *kv_cache);
    model::StepInput decode;
    decode.add_sequence(std::span<const int32_t>(tokens.data(), 1), n, table, bs, model::StepInput::Logits::Last);
    const Tensor logits = model.forward(decode, *kv_cache);
    backend::Buffer id = be.alloc(4);
    be.argmax_rows(id.view(DType::I32, {1}), logits);
    be.synchronize();
    for (int32_t b : table) blocks->release(b);
    spdlog::info("warm-up: a {}-token step and a decode step in {:.2f} s",
                 n, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

Engine::Engine(model::Model& model, const tokenizer::Tokenizer& tokenizer, const EngineConfig& config)
    : impl_(std::make_unique<Impl>(model, tokenizer, config)) {
    Impl& m = *impl_;
    config.validate();
    const model::ModelConfig& mc = model.config();
    m.max_model_len = config.max_model_len > 0 ? std::min(config.max_model_len, mc.max_context) : mc.max_context;
    if (m.config.max_num_batched_tokens == 0)
        m.config.max_num_batched_tokens = default_max_num_batched_tokens(model.backend().device());
    const kv::KvCacheShape shape = kv_shape(mc, config.block_size, config.kv_dtype);
    if (m.config.kv_cache_bytes == 0) {
        const auto [free_b, total_b] = model.backend().device_memory();
        if (total_b > 0) {
            // vLLM's rule: utilization x total is this engine's share; what its backend already holds (the weights)
            // and a reserve for activations, logits and library workspaces come out of it first, and the pool never
            // takes more than is free (other processes may hold part of the device).
            const size_t held = model.backend().allocated_bytes();
            const size_t reserve = std::min(size_t(2) << 30, total_b / 16);
            const double share = config.gpu_memory_utilization * double(total_b);
            size_t kv = share > double(held + reserve) ? size_t(share) - held - reserve : 0;
            kv = std::min(kv, free_b > reserve ? free_b - reserve : 0);
            m.config.kv_cache_bytes = kv;
        } else {
            const size_t one_seq = shape.bytes_per_token() * size_t(m.max_model_len + config.block_size);
            const size_t half_ram = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE)) / 2;
            m.config.kv_cache_bytes = std::min(std::max(size_t(2) << 30, one_seq), std::max(half_ram, one_seq));
        }
    }
    const int n_blocks = kv::PagedKvCache::blocks_for_bytes(shape, m.config.kv_cache_bytes);
    if (int64_t(n_blocks) * config.block_size < m.max_model_len)
        raise(ErrorCode::OutOfMemory,
              "the KV cache budget of {} MiB holds {} tokens, less than one sequence of max_model_len {} tokens "
              "({} bytes per token): raise --kv-cache-memory or --gpu-memory-utilization, or lower --max-model-len",
              m.config.kv_cache_bytes >> 20, int64_t(n_blocks) * config.block_size, m.max_model_len,
              shape.bytes_per_token());
    m.kv_cache = std::make_unique<kv::PagedKvCache>(model.backend(), shape, n_blocks);
    m.blocks = std::make_unique<kv::BlockAllocator>(n_blocks);
    m.scheduler = std::make_unique<Scheduler>(m.config, *m.blocks);
    m.host_row.resize(size_t(mc.n_vocab));
    m.stats.n_kv_blocks = n_blocks;
    m.stats.kv_tokens_capacity = n_blocks * config.block_size;
    m.async = config.async_scheduling == AsyncScheduling::On ||
              (config.async_scheduling == AsyncScheduling::Auto && model.backend().device() != Device::Cpu);
    m.warm_up();
    m.thread = std::thread([&m] { m.loop(); });
}

Engine::~Engine() {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    if (impl_->thread.joinable()) impl_->thread.join();
}

const EngineConfig& Engine::config() const { return impl_->config; }
int Engine::max_model_len() const { return impl_->max_model_len; }
int Engine::kv_tokens_capacity() const { return impl_->kv_cache->n_blocks() * impl_->config.block_size; }

bool Engine::healthy() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->healthy;
}

EngineStats Engine::stats() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->stats;
}

void Engine::submit(GenerationRequest request, OutputCallback on_output) {
    Impl& m = *impl_;
    request.params.validate();
    if (request.n < 1 || request.n > m.config.max_n)
        raise(ErrorCode::InvalidArgument, "'n' must be between 1 and {}, got {}", m.config.max_n, request.n);
    if (request.prompt.empty()) raise(ErrorCode::InvalidArgument, "the prompt is empty");
    const int n_vocab = m.model.config().n_vocab;
    for (int32_t t : request.prompt)
        if (t < 0 || t >= n_vocab) raise(ErrorCode::InvalidArgument, "prompt token id {} is outside the vocabulary", t);
    const int64_t total = int64_t(request.prompt.size()) + request.params.max_tokens;
    if (total > m.max_model_len)
        raise(ErrorCode::ContextOverflow,
              "this model's maximum context length is {} tokens, but {} prompt tokens plus max_tokens {} were "
              "requested",
              m.max_model_len, request.prompt.size(), request.params.max_tokens);
    auto state = std::make_shared<RequestState>();
    state->on_output = std::move(on_output);
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        if (!m.accepting || m.stopping) raise(ErrorCode::OutOfMemory, "the server is shutting down");
        if (!m.healthy) raise(ErrorCode::Internal, "the engine is unhealthy after an internal error");
        if (m.n_queued >= m.config.max_waiting_requests)
            raise(ErrorCode::OutOfMemory, "too many requests waiting ({}); retry later", m.n_queued);
        state->seed = request.params.seed ? *request.params.seed : m.seed_source();
        state->request = std::move(request);
        m.n_queued++;
        m.incoming.push_back(std::move(state));
    }
    m.wake.notify_one();
}

void Engine::abort(const std::string& request_id) {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->aborts.push_back(request_id);
    }
    impl_->wake.notify_one();
}

void Engine::drain(double timeout_s) {
    Impl& m = *impl_;
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        m.accepting = false;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
        {
            std::lock_guard<std::mutex> lock(m.mutex);
            if (m.incoming.empty() && m.stats.n_running == 0 && m.stats.n_waiting == 0) return;
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Abort whatever is left.
    {
        std::lock_guard<std::mutex> lock(m.mutex);
        m.aborts.push_back("*");
    }
    m.wake.notify_one();
    for (int i = 0; i < 500; i++) {
        {
            std::lock_guard<std::mutex> lock(m.mutex);
            if (m.stats.n_running == 0 && m.stats.n_waiting == 0 && m.incoming.empty()) return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void Engine::Impl::loop() {
    for (;;) {
        std::deque<std::shared_ptr<RequestState>> new_requests;
        std::vector<std::string> new_aborts;
        {
            std::unique_lock<std::mutex> lock(mutex);
            wake.wait(lock, [&] {
                return stopping || !incoming.empty() || !aborts.empty() || scheduler->has_work() || inflight;
            });
            if (stopping) break;
            new_requests.swap(incoming);
            new_aborts.swap(aborts);
        }
        for (auto& r : new_requests) admit(std::move(r));
        for (const std::string& id : new_aborts) {
            if (id == "*") {
                std::vector<std::string> all;
                for (const auto& [rid, _] : requests) all.push_back(rid);
                for (const std::string& rid : all) abort_request(rid, FinishReason::Abort);
            } else {
                abort_request(id, FinishReason::Abort);
            }
        }
        try {
            if (scheduler->has_work() || inflight) step();
        } catch (const std::exception& e) {
            spdlog::error("engine step failed: {}", e.what());
            std::vector<std::string> all;
            for (const auto& [rid, _] : requests) all.push_back(rid);
            for (const std::string& rid : all) abort_request(rid, FinishReason::Error, e.what());
            std::lock_guard<std::mutex> lock(mutex);
            healthy = false;
        }
        publish_stats();
    }
    // Shutting down: every unfinished request ends with Abort.
    std::vector<std::string> all;
    for (const auto& [rid, _] : requests) all.push_back(rid);
    for (const std::string& rid : all) abort_request(rid, FinishReason::Abort);
    try {
        if (inflight) process_inflight();  // its sequences are finished: nothing is emitted
        model.backend().synchronize();
    } catch (const std::exception& e) {
        spdlog::error("engine shutdown: {}", e.what());
    }
    inflight.reset();
    retired.clear();
    publish_stats();
}

void Engine::Impl::admit(std::shared_ptr<RequestState> req) {
    const GenerationRequest& r = req->request;
    if (requests.count(r.request_id)) {
        RequestOutput out;
        out.request_id = r.request_id;
        out.finished = true;
        out.finish_reason = FinishReason::Error;
        out.error = "duplicate request id";
        req->on_output(out);
        std::lock_guard<std::mutex> lock(mutex);
        n_queued--;
        return;
    }
    auto seq = std::make_unique<Sequence>();
    seq->seq_id = next_seq_id++;
    seq->arrival = next_arrival++;
    seq->priority = r.priority;
    seq->tokens = r.prompt;
    seq->n_prompt = int(r.prompt.size());
    seq->fork_pending = r.n > 1;
    seq->width = r.n;
    seq->sampler = std::make_unique<Sampler>(r.params, mix_seed(req->seed, 0));
    seq->text = std::make_unique<TextStream>(tokenizer, r.params.stop, r.skip_special_tokens);
    seq->request = req;
    req->n_live = r.n;
    req->seqs.push_back(seq.get());
    scheduler->add(seq.get());
    {
        std::lock_guard<std::mutex> lock(mutex);
        stats.n_prompt_tokens += seq->n_prompt;
    }
    requests.emplace(r.request_id, req);
    seqs.emplace(seq->seq_id, std::move(seq));
}

void Engine::Impl::finish_seq(Sequence* seq, FinishReason reason, const std::string& error) {
    std::shared_ptr<RequestState> req = seq->request;
    scheduler->finish(seq);
    publish_occupancy();  // a client that sees its request finish also sees its blocks freed
    seq->finish_reason = reason;
    RequestOutput out;
    out.request_id = req->request.request_id;
    out.index = seq->choice_index;
    if (reason != FinishReason::Error && reason != FinishReason::Abort) out.text = seq->text->finish();
    out.finished = true;
    out.finish_reason = reason;
    out.error = error;
    out.n_prompt_tokens = seq->n_prompt;
    out.n_completion_tokens = seq->n_output();
    out.n_cached_prompt_tokens = seq->n_cached_prompt;
    // A parent that never forked finishes all n choices at once (abort or error before the first token).
    const int n_choices = seq->fork_pending ? req->request.n : 1;
    for (int i = 0; i < n_choices; i++) {
        out.index = seq->fork_pending ? i : seq->choice_index;
        req->on_output(out);
    }
    req->n_live -= n_choices;
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (req->n_live == 0) stats.n_requests_finished++;
    }
    if (req->n_live == 0) requests.erase(req->request.request_id);
    retire(seq);
}

void Engine::Impl::retire(Sequence* seq) {
    auto it = seqs.find(seq->seq_id);
    if (it == seqs.end()) return;
    retired.emplace_back(n_launched, std::move(it->second));
    seqs.erase(it);
}

void Engine::Impl::free_retired() {
    std::erase_if(retired, [&](const auto& r) { return r.first <= n_processed; });
}

void Engine::Impl::abort_request(const std::string& id, FinishReason reason, const std::string& error) {
    auto it = requests.find(id);
    if (it == requests.end()) return;
    std::shared_ptr<RequestState> req = it->second;
    std::vector<Sequence*> live;
    for (Sequence* s : req->seqs)
        if (s->status != SeqStatus::Finished) live.push_back(s);
    req->seqs.clear();
    for (Sequence* s : live) finish_seq(s, reason, error);
}

void Engine::Impl::fork(Sequence* parent) {
    std::shared_ptr<RequestState> req = parent->request;
    parent->fork_pending = false;
    parent->width = 1;
    for (int i = 1; i < req->request.n; i++) {
        auto child = std::make_unique<Sequence>();
        child->seq_id = next_seq_id++;
        child->arrival = parent->arrival;
        child->priority = parent->priority;
        child->tokens = parent->tokens;
        child->n_prompt = parent->n_prompt;
        child->n_computed = parent->n_computed;
        child->n_cached_prompt = parent->n_cached_prompt;
        child->block_table = parent->block_table;
        for (int32_t id : child->block_table) blocks->retain(id);
        child->n_hashed_blocks = parent->n_hashed_blocks;
        child->last_hash = parent->last_hash;
        child->choice_index = i;
        child->sampler = std::make_unique<Sampler>(req->request.params, mix_seed(req->seed, uint64_t(i)));
        child->text = std::make_unique<TextStream>(tokenizer, req->request.params.stop, req->request.skip_special_tokens);
        child->request = req;
        req->seqs.push_back(child.get());
        scheduler->add_running(child.get());
        seqs.emplace(child->seq_id, std::move(child));
    }
}

void Engine::Impl::sample_and_emit(Sequence* seq, std::span<float> logits) {
    const std::span<const int32_t> prompt(seq->tokens.data(), size_t(seq->n_prompt));
    const std::span<const int32_t> output(seq->tokens.data() + seq->n_prompt, size_t(seq->n_output()));
    emit(seq, seq->sampler->sample(logits, prompt, output));
}

void Engine::Impl::emit(Sequence* seq, const SampledToken& tok, int index) {
    const GenerationRequest& r = seq->request->request;
    const SamplingParams& p = r.params;
    if (index < 0) {
        seq->tokens.push_back(tok.token);
        index = seq->n_tokens() - 1;
    } else {
        seq->tokens[size_t(index)] = tok.token;
        if (seq->pending_index == index) seq->pending_index = seq->pending_row = -1;
    }
    const int n_known = index + 1;  // tokens known on the host (a later step's placeholder may follow)
    if (seq->padding) {  // a static batch's finished row: computed, read by nobody
        if (n_known >= max_model_len) {
            scheduler->finish(seq);
            retire(seq);
        }
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mutex);
        stats.n_generation_tokens++;
    }
    RequestOutput out;
    out.request_id = r.request_id;
    out.index = seq->choice_index;
    out.token_ids.push_back(tok.token);
    if (p.n_logprobs >= 0) out.logprobs.push_back(tok);
    const bool eos = !p.ignore_eos && tokenizer.is_eos(tok.token);
    const bool stop_id = std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), tok.token) != r.stop_token_ids.end();
    TextStream::Delta d = seq->text->push(tok.token);
    out.text = std::move(d.text);
    FinishReason reason = FinishReason::None;
    if (eos || stop_id || d.stopped) reason = FinishReason::Stop;
    else if (n_known - seq->n_prompt >= p.max_tokens || n_known >= max_model_len) reason = FinishReason::Length;
    if (reason == FinishReason::None) {
        seq->request->on_output(out);
        return;
    }
    // Static batching keeps the row computing until the batch ends (Sequence::padding); otherwise a token drawn
    // after the stop is dropped and the blocks are freed now.
    const bool padding = config.scheduling == SchedulingPolicy::Static;
    if (!padding) {
        seq->tokens.resize(size_t(n_known));
        seq->pending_index = seq->pending_row = -1;
    }
    // The finishing event carries this token too.
    RequestOutput last = std::move(out);
    last.text += seq->text->finish();
    last.finished = true;
    last.finish_reason = reason;
    last.n_prompt_tokens = seq->n_prompt;
    last.n_completion_tokens = n_known - seq->n_prompt;
    last.n_cached_prompt_tokens = seq->n_cached_prompt;
    if (padding) seq->padding = true;
    else scheduler->finish(seq);
    publish_occupancy();  // a client that sees its request finish also sees its blocks freed
    seq->finish_reason = reason;
    std::shared_ptr<RequestState> req = seq->request;
    req->on_output(last);
    req->n_live--;
    req->seqs.erase(std::remove(req->seqs.begin(), req->seqs.end(), seq), req->seqs.end());
    if (req->n_live == 0) {
        requests.erase(r.request_id);
        std::lock_guard<std::mutex> lock(mutex);
        stats.n_requests_finished++;
    }
    if (!padding) retire(seq);
}

void Engine::Impl::process_inflight() {
    InflightStep st = std::move(*inflight);
    inflight.reset();
    host_ids.resize(st.rows.size());
    model.backend().finish_readback(st.ticket, host_ids.data());
    for (size_t r = 0; r < st.rows.size(); r++) {
        auto [seq, index] = st.rows[r];
        if (seq->status == SeqStatus::Finished) continue;  // stopped at an earlier step, or aborted
        SampledToken tok;
        tok.token = host_ids[r];
        emit(seq, tok, index);
    }
    n_processed = st.id;
}

void Engine::Impl::step() {
    const auto t_start = std::chrono::steady_clock::now();
    StepPlan plan = scheduler->schedule();
    for (Sequence* s : plan.released) retire(s);  // a static batch's padding rows, its batch done
    if (plan.empty()) {
        if (inflight) process_inflight();  // the last launched step: its ids still have to be emitted
        free_retired();
        return;
    }
    // Decode-only steps (every sequence computes one token and samples it) are timed on their own: their rate is the
    // engine's decode throughput at that batch size.
    bool decode_only = true;
    for (const ScheduledSeq& s : plan.seqs) decode_only = decode_only && s.n_new == 1 && s.sample;
    struct StepTimer {
        Impl& m;
        bool on;
        int n;
        std::chrono::steady_clock::time_point t0;
        ~StepTimer() {
            if (!on) return;
            const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::lock_guard<std::mutex> lock(m.mutex);
            m.stats.n_decode_steps++;
            m.stats.decode_step_tokens += n;
            m.stats.decode_step_seconds += dt;
        }
    } timer{*this, decode_only, int(plan.seqs.size()), t_start};
    for (const auto& [src, dst] : plan.block_copies) kv_cache->copy_block(model.backend(), src, dst);
    model::StepInput in;
    for (const ScheduledSeq& s : plan.seqs) {
        Sequence* seq = s.seq;
        const int first = in.n_tokens();
        in.add_sequence(std::span<const int32_t>(seq->tokens.data() + seq->n_computed, size_t(s.n_new)), seq->n_computed,
                        seq->block_table, config.block_size,
                        s.sample ? model::StepInput::Logits::Last : model::StepInput::Logits::None);
        // A token the in-flight step is drawing is fed from its id buffer on the device.
        if (seq->pending_index >= seq->n_computed && seq->pending_index < seq->n_computed + s.n_new) {
            OSP_CHECK(inflight, "sequence {} waits for a token no step is drawing", seq->seq_id);
            const int pos = first + seq->pending_index - seq->n_computed;
            in.tokens[size_t(pos)] = 0;
            in.device_token_pos.push_back(pos);
            in.device_token_row.push_back(seq->pending_row);
        }
    }
    if (!in.device_token_pos.empty())
        in.device_tokens = step_ids[inflight->buf].view(DType::I32, {int64_t(inflight->rows.size())});
    const Tensor logits = model.forward(in, *kv_cache);
    const uint64_t step_id = ++n_launched;
    {
        std::lock_guard<std::mutex> lock(mutex);
        stats.n_steps++;
    }
    const int64_t n_vocab = logits.cols(), n_rows = logits.rows();
    // Every row is drawn where the logits are (BatchSampler: penalties and logprobs on the device too) and only ids
    // and requested logprobs come back, except a parent about to fork into n choices: its row comes to the host,
    // where each choice samples it. Rows with nothing but temperature, top-k/p, min-p and a seed ("plain") can be
    // drawn by a step whose ids are read back later (async scheduling).
    backend::Backend& be = model.backend();
    bool any_fork = false, all_plain = true;
    for (const ScheduledSeq& s : plan.seqs) {
        if (!s.sample) continue;
        any_fork = any_fork || s.seq->fork_pending;
        all_plain = all_plain && s.seq->request->request.params.device_samplable();
    }
    // The rows to draw, with each sequence's history as it stands when called.
    auto collect_draw_rows = [&] {
        draw_rows.clear();
        for (const ScheduledSeq& s : plan.seqs) {
            if (!s.sample) continue;
            const Sequence* seq = s.seq;
            draw_rows.push_back({seq->sampler.get(), &seq->request->request.params,
                                 std::span<const int32_t>(seq->tokens.data(), size_t(seq->n_prompt)),
                                 std::span<const int32_t>(seq->tokens.data() + seq->n_prompt, size_t(seq->n_output()))});
        }
    };

    if (async && !any_fork && all_plain) {
        // Launch the draw, leave placeholders for its ids, and emit the previous step's ids while the device works.
        InflightStep next;
        next.id = step_id;
        next.buf = inflight ? inflight->buf ^ 1 : 0;
        if (n_rows > 0) {
            backend::Buffer& ids = step_ids[next.buf];
            if (ids.n_bytes() < size_t(n_rows) * 4) {
                if (inflight) process_inflight();  // its ids may live in the buffer about to be replaced
                ids = be.alloc(size_t(std::max<int64_t>(n_rows, 256)) * 4);
            }
            collect_draw_rows();
            batch_sampler.launch_plain(logits, draw_rows, ids);
            next.ticket = be.begin_readback(ids.data(), size_t(n_rows) * 4);
            int row = 0;
            for (const ScheduledSeq& s : plan.seqs) {
                if (!s.sample) continue;
                Sequence* seq = s.seq;
                seq->tokens.push_back(kPendingToken);
                seq->pending_index = seq->n_tokens() - 1;
                seq->pending_row = row++;
                next.rows.emplace_back(seq, seq->pending_index);
            }
        }
        if (inflight) {
            process_inflight();
            std::lock_guard<std::mutex> lock(mutex);
            stats.n_overlapped_steps++;
        }
        scheduler->commit(plan);  // after the previous step's ids filled this step's inputs (block hashes)
        if (n_rows > 0) inflight = std::move(next);
        else n_processed = step_id;
        free_retired();
        return;
    }

    // Synchronous: the previous step's ids first (they complete this step's histories), then this step's draw.
    if (inflight) process_inflight();
    scheduler->commit(plan);
    if (n_rows == 0) {
        n_processed = step_id;
        free_retired();
        return;
    }
    if (any_fork) {  // before the draw applies penalties in place
        host_logits.resize(size_t(n_rows * n_vocab));
        be.copy_to_host(host_logits.data(), logits.data, host_logits.size() * 4);
    }
    collect_draw_rows();
    const std::vector<SampledToken> drawn = batch_sampler.draw(logits, draw_rows);
    int row = 0;
    for (const ScheduledSeq& s : plan.seqs) {
        if (!s.sample) continue;
        Sequence* seq = s.seq;
        const int r = row++;
        if (seq->status == SeqStatus::Finished) continue;  // stopped in the previous step: this row is dropped
        if (seq->fork_pending) {
            // Parallel sampling: the n choices share the prompt's blocks and sample from the same logits.
            const float* src = host_logits.data() + int64_t(r) * n_vocab;
            fork(seq);
            std::vector<Sequence*> family = seq->request->seqs;
            for (Sequence* member : family) {
                std::copy(src, src + n_vocab, host_row.begin());  // the sampler edits its row (penalties)
                sample_and_emit(member, host_row);
            }
            continue;
        }
        emit(seq, drawn[size_t(r)]);
    }
    n_processed = step_id;
    free_retired();
}

void Engine::Impl::publish_occupancy() {
    std::lock_guard<std::mutex> lock(mutex);
    stats.n_waiting = scheduler->n_waiting() + int(incoming.size());
    stats.n_running = scheduler->n_running();
    stats.n_kv_blocks_used = blocks->n_used_blocks();
}

void Engine::Impl::publish_stats() {
    int64_t allocated = 0, used = 0;
    for (Sequence* s : scheduler->running()) {
        allocated += int64_t(s->block_table.size()) * config.block_size;
        used += s->n_computed;
    }
    std::lock_guard<std::mutex> lock(mutex);
    stats.n_waiting = scheduler->n_waiting() + int(incoming.size());
    stats.n_running = scheduler->n_running();
    stats.n_kv_blocks_used = blocks->n_used_blocks();
    stats.n_preemptions = scheduler->counters().n_preemptions;
    stats.prefix_cache_queries = scheduler->counters().prefix_queries;
    stats.prefix_cache_hits = scheduler->counters().prefix_hits;
    stats.kv_slots_allocated += allocated;
    stats.kv_slots_used += used;
    n_queued = stats.n_waiting;
}

std::vector<RequestOutput> generate_blocking(Engine& engine, GenerationRequest request) {
    const int n = request.n;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<RequestOutput> merged(static_cast<size_t>(n));
    int n_done = 0;
    engine.submit(std::move(request), [&](const RequestOutput& o) {
        std::lock_guard<std::mutex> lock(mu);
        RequestOutput& m = merged[size_t(o.index)];
        m.request_id = o.request_id;
        m.index = o.index;
        m.token_ids.insert(m.token_ids.end(), o.token_ids.begin(), o.token_ids.end());
        m.text += o.text;
        m.logprobs.insert(m.logprobs.end(), o.logprobs.begin(), o.logprobs.end());
        if (o.finished) {
            m.finished = true;
            m.finish_reason = o.finish_reason;
            m.error = o.error;
            m.n_prompt_tokens = o.n_prompt_tokens;
            m.n_completion_tokens = o.n_completion_tokens;
            m.n_cached_prompt_tokens = o.n_cached_prompt_tokens;
            n_done++;
            cv.notify_all();
        }
    });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return n_done == n; });
    return merged;
}

}  // namespace osprey::engine
