#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "backend/cpu/cpu_kernels.h"
#include "backend/sampling.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"

namespace osprey::backend {

namespace {

using cpu::CpuKernels;

class CpuBackend final : public Backend {
  public:
    CpuBackend(int n_threads, const char* isa) : pool_(n_threads), kernels_(cpu::select_kernels(isa)) {}

    std::string name() const override {
        return fmt::format("cpu ({}, {} threads)", cpu::isa_name(kernels_.isa), pool_.n_threads());
    }
    Device device() const override { return Device::Cpu; }

    Buffer alloc(size_t n_bytes) override {
        const size_t rounded = std::max<size_t>(64, (n_bytes + 63) / 64 * 64);
        void* p = std::aligned_alloc(64, rounded);
        if (!p) raise(ErrorCode::OutOfMemory, "cpu alloc of {} bytes failed", n_bytes);
        return Buffer(this, p, n_bytes);
    }
    void free_raw(void* data, size_t) override { std::free(data); }
    void copy_from_host(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
    void copy_to_host(void* dst, const void* src, size_t n) override { std::memcpy(dst, src, n); }
    void copy(void* dst, const void* src, size_t n) override { std::memmove(dst, src, n); }
    void synchronize() override {}

    bool supports_matmul(DType w) const override { return kernels_.rows_dot[int(w)] != nullptr; }
    bool supports_embedding(DType t) const override {
        return cpu::dequantize_supported(t) && t != DType::Q8_1 && t != DType::Q8_K;
    }
    bool supports_kv_dtype(DType t) const override { return t == DType::F32 || t == DType::F16; }

    void embedding(Tensor out, const Tensor& table, const Tensor& ids, float scale) override {
        const int64_t T = ids.numel(), d = table.cols();
        const int32_t* id = ids.as<int32_t>();
        float* o = out.as<float>();
        for (int64_t t = 0; t < T; t++) {
            OSP_CHECK(id[t] >= 0 && id[t] < table.rows(), "token id {} out of range", id[t]);
            const char* row = static_cast<const char*>(table.data) + size_t(id[t]) * table.row_bytes();
            cpu::dequantize_row_ref(table.dtype, row, o + t * d, d);
            if (scale != 1.0f)
                for (int64_t i = 0; i < d; i++) o[t * d + i] *= scale;
        }
    }

    // F16, BF16 and Q8_0 matrices get a copy in panels of 16 rows when the kernel table has the panel kernels (AVX-512):
    // every product with them, at any M, then runs the panel kernels (see cpu_kernels.h). Other types keep their
    // rows.
    void prepare_matrix(const Tensor& w) override {
        const int64_t N = w.rows(), K = w.cols();
        const int64_t bytes = cpu::panel_bytes(w.dtype, N, K);
        if (!kernels_.panel_f16 || bytes == 0 || w.device != Device::Cpu || panels_.count(w.data)) return;
        std::vector<uint8_t> packed(static_cast<size_t>(bytes));
        const int64_t panel = bytes / ((N + 15) / 16);  // bytes per panel
        pool_.parallel_for((N + 15) / 16, 8, [&](int64_t b, int64_t e) {  // panels [b, e): rows [16 b, 16 e)
            const int64_t rows = std::min(N, 16 * e) - 16 * b;
            if (w.dtype == DType::F16 || w.dtype == DType::BF16)
                cpu::pack_16bit_panels(w.as<const uint16_t>() + b * 16 * K, rows, K,
                                     reinterpret_cast<uint16_t*>(packed.data() + b * panel));
            else
                cpu::pack_q8_0_panels(w.as<const BlockQ8_0>() + b * 16 * (K / 32), rows, K, packed.data() + b * panel);
        });
        panels_.emplace(w.data, std::move(packed));
    }

    void matmul(Tensor out, const Tensor& x, const Tensor& w) override {
        const cpu::MatmulJob job = job_for(out, w);
        cpu::matmul_driver_multi(pool_, kernels_, scratch_, x.as<float>(), x.rows(), x.cols(), &job, 1);
    }

    void matmul_multi(std::span<Tensor> outs, const Tensor& x, std::span<const Tensor> ws) override {
        OSP_CHECK(outs.size() == ws.size() && !ws.empty() && ws.size() <= size_t(cpu::kMaxMatmulJobs),
                  "matmul_multi: {} outputs for {} weights", outs.size(), ws.size());
        cpu::MatmulJob jobs[cpu::kMaxMatmulJobs];
        for (size_t i = 0; i < ws.size(); i++) jobs[i] = job_for(outs[i], ws[i]);
        cpu::matmul_driver_multi(pool_, kernels_, scratch_, x.as<float>(), x.rows(), x.cols(), jobs, int(ws.size()));
    }

    void add_bias(Tensor x, const Tensor& bias) override {
        const int64_t N = bias.numel(), R = x.numel() / N;
        float* p = x.as<float>();
        const float* b = bias.as<float>();
        for (int64_t r = 0; r < R; r++)
            for (int64_t n = 0; n < N; n++) p[r * N + n] += b[n];
    }

    void add(Tensor out, const Tensor& a, const Tensor& b) override {
        const int64_t n = out.numel();
        float* o = out.as<float>();
        const float *pa = a.as<float>(), *pb = b.as<float>();
        for (int64_t i = 0; i < n; i++) o[i] = pa[i] + pb[i];
    }

    void rms_norm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
        const int64_t d = w.cols();
        for_rows(x.numel() / d, [&](int64_t r) {
            rms_norm_row(out.as<float>() + r * d, x.as<float>() + r * d, w.as<float>(), d, eps);
        });
    }

    // x += delta, then out = rms_norm(x) * w, row by row (threads take rows): add() and rms_norm()'s arithmetic.
    void add_rms_norm(Tensor x, const Tensor& delta, Tensor out, const Tensor& w, float eps) override {
        const int64_t d = w.cols();
        for_rows(x.numel() / d, [&](int64_t r) {
            float* px = x.as<float>() + r * d;
            const float* pd = delta.as<float>() + r * d;
            for (int64_t i = 0; i < d; i++) px[i] = px[i] + pd[i];
            rms_norm_row(out.as<float>() + r * d, px, w.as<float>(), d, eps);
        });
    }

    void gated_activation(Tensor out, const Tensor& gate, const Tensor& up, Activation act) override {
        const int64_t n = out.numel();
        float* o = out.as<float>();
        const float *g = gate.as<float>(), *u = up.as<float>();
        const auto kernel = act == Activation::Silu ? kernels_.silu_mul : kernels_.gelu_tanh_mul;
        auto fn = [&](int64_t b, int64_t e) { kernel(o + b, g + b, u + b, e - b); };
        if (n < 8192) fn(0, n);
        else pool_.parallel_for(n, 1024, fn);
    }

    void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, const RopeParams& p) override {
        const int half = p.rotary_dim / 2;
        const float* cs = angle_table(positions.as<int32_t>(), positions.numel(), inv_freq.as<float>(), half);
        for_rows(positions.numel(), [&](int64_t t) {
            rotate_heads(x.as<float>() + t * p.n_heads * p.head_dim, p, cs + t * 2 * half);
        });
    }

    void kv_write(KvLayerView kv, const Tensor& k, const Tensor& v, const AttentionBatch& batch) override {
        const int32_t* slots = batch.slot_mapping.as<int32_t>();
        for_rows(k.rows(), [&](int64_t t) { write_kv_row(kv, k, v, t, slots[t]); });
    }

    // RoPE on q and k and the KV write of each token in one pass over the tokens (threads take tokens), the same
    // arithmetic as rope() and kv_write().
    void rope_kv_write(Tensor q, Tensor k, const Tensor& v, const Tensor& inv_freq, const RopeParams& rope_q,
                       const RopeParams& rope_k, KvLayerView kv, const AttentionBatch& batch) override {
        if (rope_q.rotary_dim != rope_k.rotary_dim) {
            Backend::rope_kv_write(q, k, v, inv_freq, rope_q, rope_k, kv, batch);
            return;
        }
        const int half = rope_q.rotary_dim / 2;
        const int64_t T = batch.positions.numel();
        const float* cs = angle_table(batch.positions.as<int32_t>(), T, inv_freq.as<float>(), half);
        const int32_t* slots = batch.slot_mapping.as<int32_t>();
        for_rows(T, [&](int64_t t) {
            rotate_heads(q.as<float>() + t * rope_q.n_heads * rope_q.head_dim, rope_q, cs + t * 2 * half);
            rotate_heads(k.as<float>() + t * rope_k.n_heads * rope_k.head_dim, rope_k, cs + t * 2 * half);
            write_kv_row(kv, k, v, t, slots[t]);
        });
    }

    void paged_attention(Tensor out, const Tensor& q, KvLayerView kv, const AttentionBatch& batch,
                         const AttentionParams& p) override {
        cpu::paged_attention_driver(pool_, kernels_, out.as<float>(), q.as<float>(), kv, batch, p);
    }

    void gather_rows(Tensor out, const Tensor& x, const Tensor& rows) override {
        const int64_t R = rows.numel(), d = x.cols();
        const int32_t* r = rows.as<int32_t>();
        for (int64_t i = 0; i < R; i++)
            std::memcpy(out.as<float>() + i * d, x.as<float>() + int64_t(r[i]) * d, size_t(d) * 4);
    }

    void argmax_rows(Tensor ids, const Tensor& logits) override {
        const int64_t R = logits.rows(), V = logits.cols();
        for (int64_t r = 0; r < R; r++)  // greedy sampling: the first maximum
            ids.as<int32_t>()[r] = sample_row(std::span<const float>(logits.as<float>() + r * V, size_t(V)), {});
    }

    void sample_rows(Tensor ids, const Tensor& logits, const Tensor& params) override {
        const int64_t R = logits.rows(), V = logits.cols();
        const auto* rows = reinterpret_cast<const SamplingRow*>(params.data);
        pool_.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; r++)
                ids.as<int32_t>()[r] = sample_row(std::span<const float>(logits.as<float>() + r * V, size_t(V)),
                                                  rows[r]);
        });
    }

    void apply_penalties(Tensor logits, const Tensor& entries, const Tensor& row_start, const Tensor& params) override {
        const int64_t R = logits.rows(), V = logits.cols();
        const int32_t* start = row_start.as<int32_t>();
        for (int64_t r = 0; r < R; r++)
            apply_penalties_row(logits.as<float>() + r * V, V, entries.as<int32_t>() + 2 * int64_t(start[r]),
                                int64_t(start[r + 1]) - start[r], params.as<float>() + 4 * r);
    }

    void row_logprobs(Tensor top_ids, Tensor top_logprobs, Tensor lse, const Tensor& logits, int n) override {
        const int64_t R = logits.rows(), V = logits.cols();
        pool_.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; r++) {
                const std::span<const float> row(logits.as<float>() + r * V, size_t(V));
                const float l = row_log_sum_exp(row);
                lse.as<float>()[r] = l;
                if (n > 0) row_top_logprobs(top_ids.as<int32_t>() + r * n, top_logprobs.as<float>() + r * n, row, l, n);
            }
        });
    }

    void token_logprobs(Tensor out, const Tensor& logits, const Tensor& lse, const Tensor& ids) override {
        const int64_t R = logits.rows(), V = logits.cols();
        for (int64_t r = 0; r < R; r++) {
            const int32_t id = ids.as<int32_t>()[r];
            out.as<float>()[r] = id >= 0 && id < V ? logits.as<float>()[r * V + id] - lse.as<float>()[r]
                                                   : std::numeric_limits<float>::quiet_NaN();
        }
    }

    void scale(Tensor x, float s, float softcap) override {
        const int64_t n = x.numel();
        float* p = x.as<float>();
        for (int64_t i = 0; i < n; i++) {
            float v = p[i] * s;
            if (softcap > 0) v = softcap * std::tanh(v / softcap);
            p[i] = v;
        }
    }

  private:
    cpu::MatmulJob job_for(const Tensor& out, const Tensor& w) const {
        cpu::MatmulJob job{out.as<float>(), w.dtype, w.data, w.rows()};
        if (panels_.empty()) return job;
        const auto it = panels_.find(w.data);
        if (it != panels_.end() && int64_t(it->second.size()) == cpu::panel_bytes(w.dtype, w.rows(), w.cols()))
            job.panels = it->second.data();
        return job;
    }

    // The cos / sin rows of a step's positions for one frequency table, [T][2 * half] (cs[i] = cos, cs[half + i] =
    // sin of pos * inv_freq[i], from a double angle). Every layer of a step asks for the same ones, so the last two
    // (a model's global and sliding-window tables) are kept and reused when positions and frequencies are equal
    // (compared by content).
    struct AngleTable {
        std::vector<int32_t> positions;
        std::vector<float> inv_freq, cs;
    };
    const float* angle_table(const int32_t* pos, int64_t T, const float* inv_freq, int half) {
        for (AngleTable& a : angle_tables_) {
            if (a.positions.size() == size_t(T) && a.inv_freq.size() == size_t(half) &&
                std::equal(pos, pos + T, a.positions.begin()) &&
                std::equal(inv_freq, inv_freq + half, a.inv_freq.begin()))
                return a.cs.data();
        }
        AngleTable& a = angle_tables_[next_angle_table_];
        next_angle_table_ = (next_angle_table_ + 1) % 2;
        a.positions.assign(pos, pos + T);
        a.inv_freq.assign(inv_freq, inv_freq + half);
        a.cs.resize(size_t(T) * 2 * size_t(half));
        for_rows(T, [&](int64_t t) {
            float* cs = a.cs.data() + t * 2 * half;
            for (int i = 0; i < half; i++) {
                const double angle = double(pos[t]) * double(inv_freq[i]);
                cs[i] = float(std::cos(angle));
                cs[half + i] = float(std::sin(angle));
            }
        });
        return a.cs.data();
    }

    // One row: the sum of squares in f32 with 8 interleaved partial sums (fixed order; vectorizable), then
    // po = px * inv * pw (po may alias px).
    static void rms_norm_row(float* po, const float* px, const float* pw, int64_t d, float eps) {
        float part[8] = {};
        int64_t i = 0;
        for (; i + 8 <= d; i += 8)
            for (int j = 0; j < 8; j++) part[j] += px[i + j] * px[i + j];
        float ss = 0;
        for (int j = 0; j < 8; j++) ss += part[j];
        for (; i < d; i++) ss += px[i] * px[i];
        const float inv = 1.0f / std::sqrt(ss / float(d) + eps);
        for (int64_t k = 0; k < d; k++) po[k] = px[k] * inv * pw[k];
    }

    // fn(r) for r in [0, R): on the calling thread for a few rows, else the pool takes runs of rows.
    void for_rows(int64_t R, const std::function<void(int64_t)>& fn) {
        if (R < 8) {
            for (int64_t r = 0; r < R; r++) fn(r);
            return;
        }
        pool_.parallel_for(R, 4, [&](int64_t b, int64_t e) {
            for (int64_t r = b; r < e; r++) fn(r);
        });
    }

    // One token's heads (x: its first head) rotated in place by the pairs of p (neox: (i, i + half), else
    // (2i, 2i + 1)).
    static void rotate_heads(float* x, const RopeParams& p, const float* cs) {
        const int half = p.rotary_dim / 2;
        for (int h = 0; h < p.n_heads; h++) {
            float* v = x + int64_t(h) * p.head_dim;
            for (int i = 0; i < half; i++) {
                const int i0 = p.neox ? i : 2 * i, i1 = p.neox ? i + half : 2 * i + 1;
                const float a = v[i0], b = v[i1], c = cs[i], s = cs[half + i];
                v[i0] = a * c - b * s;
                v[i1] = b * c + a * s;
            }
        }
    }

    // Token t's K and V rows into the pool at slot (skipped when slot < 0).
    void write_kv_row(KvLayerView& kv, const Tensor& k, const Tensor& v, int64_t t, int32_t slot) const {
        if (slot < 0) return;
        const int64_t row = k.cols(), off = int64_t(slot) * row;
        const float* pk = k.as<float>() + t * row;
        const float* pv = v.as<float>() + t * row;
        if (kv.k.dtype == DType::F16) {
            uint16_t* dk = kv.k.as<uint16_t>() + off;
            uint16_t* dv = kv.v.as<uint16_t>() + off;
            kernels_.f32_to_f16(dk, pk, row);
            kernels_.f32_to_f16(dv, pv, row);
        } else {
            std::memcpy(kv.k.as<float>() + off, pk, size_t(row) * 4);
            std::memcpy(kv.v.as<float>() + off, pv, size_t(row) * 4);
        }
    }

    ThreadPool pool_;
    AngleTable angle_tables_[2];
    int next_angle_table_ = 0;
    CpuKernels kernels_;
    cpu::MatmulScratch scratch_[3];  // one per activation kind
    std::unordered_map<const void*, std::vector<uint8_t>> panels_;  // prepared matrices in panels, by their data
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int n_threads) { return std::make_unique<CpuBackend>(n_threads, nullptr); }

namespace cpu {
std::unique_ptr<Backend> make_cpu_backend_with_isa(int n_threads, const char* isa) {
    return std::make_unique<CpuBackend>(n_threads, isa);
}
}  // namespace cpu

}  // namespace osprey::backend
