#include "engine/generator.h"

#include <chrono>

#include "core/error.h"

namespace osprey::engine {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

kv::KvCacheShape kv_shape(const model::ModelConfig& c, int block_size, DType kv_dtype) {
    kv::KvCacheShape s;
    s.n_layers = c.n_layers;
    s.n_kv_heads = c.n_kv_heads;
    s.head_dim = c.head_dim;
    s.block_size = block_size;
    s.dtype = kv_dtype;
    return s;
}
}  // namespace

Generator::Generator(model::Model& model, int kv_tokens, int block_size, int prefill_chunk, DType kv_dtype)
    : model_(model),
      kv_cache_(std::make_unique<kv::PagedKvCache>(model.backend(), kv_shape(model.config(), block_size, kv_dtype),
                                                   (kv_tokens + block_size - 1) / block_size)),
      allocator_(kv_cache_->n_blocks()),
      prefill_chunk_(prefill_chunk) {}

void Generator::reset() {
    for (int32_t id : block_table_) allocator_.release(id);
    block_table_.clear();
}

bool Generator::grow_blocks(int n_tokens) {
    const int need = (n_tokens + kv_cache_->block_size() - 1) / kv_cache_->block_size() - int(block_table_.size());
    return need <= 0 || allocator_.allocate(need, block_table_);
}

GenerationStats Generator::generate(std::span<const int32_t> prompt, const SamplingParams& params, uint64_t seed,
                                    const std::unordered_set<int32_t>& eos_ids,
                                    const std::function<bool(const SampledToken&)>& on_token) {
    params.validate();
    const model::ModelConfig& c = model_.config();
    const int n_prompt = int(prompt.size());
    if (n_prompt == 0) raise(ErrorCode::InvalidArgument, "the prompt is empty");
    const int limit = std::min(c.max_context, kv_tokens());
    if (n_prompt + params.max_tokens > limit)
        raise(ErrorCode::ContextOverflow, "prompt of {} tokens plus {} new tokens exceeds the context of {} tokens",
              n_prompt, params.max_tokens, limit);
    for (int32_t t : prompt)
        if (t < 0 || t >= c.n_vocab) raise(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary", t);

    reset();
    GenerationStats stats;
    stats.n_prompt = n_prompt;
    Sampler sampler(params, seed);
    std::vector<int32_t> generated;
    const auto t0 = Clock::now();
    host_logits_.resize(size_t(c.n_vocab));

    // Prefill in chunks; only the last chunk asks for logits.
    int n_cached = 0;
    Tensor logits;
    while (n_cached < n_prompt) {
        const int n = std::min(prefill_chunk_, n_prompt - n_cached);
        OSP_CHECK(grow_blocks(n_cached + n));
        model::StepInput in;
        const bool last = n_cached + n == n_prompt;
        in.add_sequence(prompt.subspan(size_t(n_cached), size_t(n)), n_cached, block_table_, kv_cache_->block_size(),
                        last ? model::StepInput::Logits::Last : model::StepInput::Logits::None);
        logits = model_.forward(in, *kv_cache_);
        n_cached += n;
    }
    auto t_decode = Clock::now();
    // Without penalties or logprobs the token is drawn where the logits are (the same token as the host sampler).
    const bool on_device = params.device_samplable();
    backend::Backend& be = model_.backend();
    if (on_device && device_id_.n_bytes() < 4) device_id_ = be.alloc(4);
    if (on_device && device_row_.n_bytes() < sizeof(backend::SamplingRow))
        device_row_ = be.alloc(sizeof(backend::SamplingRow));
    for (;;) {
        SampledToken tok;
        if (on_device) {  // only the id comes back
            const Tensor id(device_id_.data(), DType::I32, {1}, be.device());
            if (params.greedy()) {
                be.argmax_rows(id, logits);
            } else {
                const backend::SamplingRow row = sampler.device_row(uint64_t(stats.n_generated));
                be.copy_from_host(device_row_.data(), &row, sizeof(row));
                be.sample_rows(id, logits, device_row_.view(DType::I32, {1, 8}));
            }
            be.copy_to_host(&tok.token, device_id_.data(), 4);
        } else {
            model_.backend().copy_to_host(host_logits_.data(), logits.data, host_logits_.size() * 4);
        }
        if (stats.n_generated == 0) {
            stats.prefill_seconds = seconds_since(t0);
            t_decode = Clock::now();
        }
        if (!on_device) tok = sampler.sample(host_logits_, prompt, generated);
        generated.push_back(tok.token);
        stats.n_generated++;
        const bool is_eos = !params.ignore_eos && eos_ids.count(tok.token);
        if (!on_token(tok)) {
            stats.finish_reason = "stop";
            break;
        }
        if (is_eos) {
            stats.finish_reason = "stop";
            break;
        }
        if (stats.n_generated >= params.max_tokens) break;
        OSP_CHECK(grow_blocks(n_cached + 1));
        model::StepInput in;
        const int32_t next = tok.token;
        in.add_sequence(std::span<const int32_t>(&next, 1), n_cached, block_table_, kv_cache_->block_size(),
                        model::StepInput::Logits::Last);
        logits = model_.forward(in, *kv_cache_);
        n_cached++;
    }
    stats.decode_seconds = seconds_since(t_decode);
    reset();
    return stats;
}

void Generator::score(std::span<const int32_t> tokens, const std::function<void(int, const Tensor&)>& on_logits) {
    const int n_tokens = int(tokens.size());
    if (n_tokens > kv_tokens())
        raise(ErrorCode::ContextOverflow, "{} tokens exceed the KV cache of {} tokens", n_tokens, kv_tokens());
    reset();
    int n_cached = 0;
    while (n_cached < n_tokens) {
        const int n = std::min(prefill_chunk_, n_tokens - n_cached);
        OSP_CHECK(grow_blocks(n_cached + n));
        model::StepInput in;
        in.add_sequence(tokens.subspan(size_t(n_cached), size_t(n)), n_cached, block_table_, kv_cache_->block_size(),
                        model::StepInput::Logits::All);
        const Tensor logits = model_.forward(in, *kv_cache_);
        on_logits(n_cached, logits);
        n_cached += n;
    }
    reset();
}

}  // namespace osprey::engine
