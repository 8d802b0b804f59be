#include "engine/batch_sampler.h"

#include <algorithm>

#include "core/error.h"

namespace osprey::engine {

namespace {

// b holds at least n bytes (reallocated, contents dropped, when smaller).
void ensure(backend::Backend& be, backend::Buffer& b, size_t n) {
    if (b.n_bytes() < n) b = be.alloc(std::max<size_t>(n, 256));
}

bool has_penalties(const SamplingParams& p) {
    return p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

}  // namespace

void BatchSampler::upload_rows(std::span<const DrawRow> rows) {
    const int64_t n = int64_t(rows.size());
    host_rows_.resize(size_t(n));
    for (int64_t r = 0; r < n; r++)
        host_rows_[size_t(r)] = rows[size_t(r)].sampler->device_row(uint64_t(rows[size_t(r)].generated.size()));
    ensure(be_, row_params_, size_t(n) * sizeof(backend::SamplingRow));
    be_.copy_from_host(row_params_.data(), host_rows_.data(), size_t(n) * sizeof(backend::SamplingRow));
}

void BatchSampler::launch_plain(const Tensor& logits, std::span<const DrawRow> rows, const backend::Buffer& ids) {
    const int64_t n = int64_t(rows.size());
    OSP_CHECK(logits.rows() == n && ids.n_bytes() >= size_t(n) * 4, "launch_plain: {} rows for {} logits rows", n,
              logits.rows());
    upload_rows(rows);
    be_.sample_rows(ids.view(DType::I32, {n}), logits, row_params_.view(DType::I32, {n, 8}));
}

void BatchSampler::add_penalty_entries(const DrawRow& row) {
    const SamplingParams& p = *row.params;
    counts_.clear();
    order_.clear();
    // The repetition penalty covers prompt and output; presence and frequency count generated tokens only.
    if (p.repetition_penalty != 1.0f)
        for (int32_t t : row.prompt)
            if (counts_.emplace(t, 0).second) order_.push_back(t);
    for (int32_t t : row.generated) {
        auto [it, inserted] = counts_.emplace(t, 0);
        if (inserted) order_.push_back(t);
        it->second++;
    }
    for (int32_t t : order_) entries_.push_back(t), entries_.push_back(counts_[t]);
}

std::vector<SampledToken> BatchSampler::draw(const Tensor& logits, std::span<const DrawRow> rows) {
    const int64_t n = int64_t(rows.size()), V = logits.cols();
    OSP_CHECK(logits.rows() == n, "draw: {} rows for {} logits rows", n, logits.rows());
    std::vector<SampledToken> out(static_cast<size_t>(n));
    if (n == 0) return out;
    int n_top = -1;  // the most top logprobs a row asks for; -1: no row wants logprobs
    bool any_penalty = false, raw_needed = false;
    for (const DrawRow& r : rows) {
        n_top = std::max(n_top, r.params->n_logprobs);
        any_penalty = any_penalty || has_penalties(*r.params);
        raw_needed = raw_needed || (r.params->n_logprobs >= 0 && has_penalties(*r.params));
    }
    const size_t logits_bytes = size_t(n) * size_t(V) * 4;
    const int width = std::max(n_top, 1);  // top-logprob slots per row in the device buffers

    // Logprobs are reported under the raw distribution: taken before the penalties change the row.
    if (n_top >= 0) {
        ensure(be_, lse_, size_t(n) * 4);
        ensure(be_, top_ids_, size_t(n * width) * 4);
        ensure(be_, top_logprobs_, size_t(n * width) * 4);
        be_.row_logprobs(top_ids_.view(DType::I32, {n, width}), top_logprobs_.view(DType::F32, {n, width}),
                         lse_.view(DType::F32, {n}), logits, n_top);
        if (raw_needed) {
            ensure(be_, raw_logits_, logits_bytes);
            be_.copy(raw_logits_.data(), logits.data, logits_bytes);
        }
    }
    if (any_penalty) {
        entries_.clear();
        row_start_.assign(1, 0);
        penalty_params_.clear();
        for (const DrawRow& r : rows) {
            const SamplingParams& p = *r.params;
            if (has_penalties(p)) add_penalty_entries(r);
            row_start_.push_back(int32_t(entries_.size() / 2));
            penalty_params_.insert(penalty_params_.end(),
                                   {p.repetition_penalty, p.presence_penalty, p.frequency_penalty, 0.0f});
        }
        const int64_t n_entries = int64_t(entries_.size() / 2);
        if (n_entries > 0) {
            ensure(be_, d_entries_, entries_.size() * 4);
            ensure(be_, d_row_start_, row_start_.size() * 4);
            ensure(be_, d_penalty_params_, penalty_params_.size() * 4);
            be_.copy_from_host(d_entries_.data(), entries_.data(), entries_.size() * 4);
            be_.copy_from_host(d_row_start_.data(), row_start_.data(), row_start_.size() * 4);
            be_.copy_from_host(d_penalty_params_.data(), penalty_params_.data(), penalty_params_.size() * 4);
            be_.apply_penalties(logits, d_entries_.view(DType::I32, {n_entries, 2}),
                                d_row_start_.view(DType::I32, {n + 1}), d_penalty_params_.view(DType::F32, {n, 4}));
        }
    }
    upload_rows(rows);
    ensure(be_, ids_, size_t(n) * 4);
    const Tensor ids = ids_.view(DType::I32, {n});
    be_.sample_rows(ids, logits, row_params_.view(DType::I32, {n, 8}));

    if (n_top >= 0) {  // launched before the first read-back, so one wait covers every result
        ensure(be_, chosen_logprobs_, size_t(n) * 4);
        const Tensor raw = raw_needed ? raw_logits_.view(DType::F32, {n, V}) : logits;
        be_.token_logprobs(chosen_logprobs_.view(DType::F32, {n}), raw, lse_.view(DType::F32, {n}), ids);
    }
    std::vector<int32_t> host_ids(static_cast<size_t>(n));
    be_.copy_to_host(host_ids.data(), ids_.data(), size_t(n) * 4);
    for (int64_t r = 0; r < n; r++) out[size_t(r)].token = host_ids[size_t(r)];
    if (n_top < 0) return out;

    std::vector<float> chosen(static_cast<size_t>(n)), top_lp(static_cast<size_t>(n * width));
    std::vector<int32_t> top_ids(static_cast<size_t>(n * width));
    be_.copy_to_host(chosen.data(), chosen_logprobs_.data(), chosen.size() * 4);
    if (n_top > 0) {
        be_.copy_to_host(top_ids.data(), top_ids_.data(), top_ids.size() * 4);
        be_.copy_to_host(top_lp.data(), top_logprobs_.data(), top_lp.size() * 4);
    }
    for (int64_t r = 0; r < n; r++) {
        const int want = rows[size_t(r)].params->n_logprobs;
        if (want < 0) continue;
        SampledToken& t = out[size_t(r)];
        t.logprob = chosen[size_t(r)];
        for (int j = 0; j < std::min<int64_t>(want, V); j++)
            t.top.push_back({top_ids[size_t(r) * size_t(width) + size_t(j)], top_lp[size_t(r) * size_t(width) + size_t(j)]});
    }
    return out;
}

}  // namespace osprey::engine
