// Timing probe of the CUDA backend's first increment on Llama-3.1-8B shapes, through the Backend interface
// (launches back to back, then synchronize; host clock): device-to-device copy bandwidth (the roofline's
// denominator), batch-1 matmuls per weight dtype as achieved weight bandwidth, a large-batch GEMM as TFLOP/s,
// and paged decode attention over long contexts. Not a test: numbers for docs and planning.
#include <chrono>
#include <cstring>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"

using namespace osprey;
using namespace osprey::backend;

namespace {

double time_ms(Backend& be, int iters, const std::function<void()>& f) {
    f();
    be.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; i++) f();
    be.synchronize();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
}

Buffer random_buffer(Backend& be, size_t n_bytes, uint32_t seed, bool f32 = false) {
    std::vector<uint32_t> host((n_bytes + 3) / 4);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    for (auto& w : host) {
        if (f32) {
            const float v = dist(rng);
            std::memcpy(&w, &v, 4);
        } else {
            // Random 16-bit halves in [-2, 2) as fp16/bf16-ish bit patterns without NaN/Inf exponents.
            w = (rng() & 0x3fff3fffu) | (rng() & 0x80008000u);
        }
    }
    Buffer b = be.alloc(n_bytes);
    be.copy_from_host(b.data(), host.data(), n_bytes);
    return b;
}

}  // namespace

int main() {
    if (cuda_device_count() == 0) {
        std::puts("no CUDA device");
        return 0;
    }
    auto be = make_cuda_backend(0);
    std::printf("%s\n", be->name().c_str());

    const size_t copy_bytes = size_t(2) << 30;
    Buffer a = be->alloc(copy_bytes), b = be->alloc(copy_bytes);
    const double copy_ms = time_ms(*be, 20, [&] { be->copy(b.data(), a.data(), copy_bytes); });
    const double copy_gbs = 2.0 * double(copy_bytes) / copy_ms / 1e6;  // read + write
    std::printf("d2d copy: %.1f GB/s (read+write)\n", copy_gbs);

    std::printf("\n%-6s %-14s %10s %10s %8s\n", "dtype", "shape NxK, M", "time us", "GB/s", "of copy");
    for (DType dt : {DType::BF16, DType::F16, DType::Q8_0, DType::Q4_K, DType::Q6_K, DType::Q4_0}) {
        for (auto [N, K] : {std::pair<int64_t, int64_t>{14336, 4096}, {4096, 14336}, {128256, 4096}}) {
            Tensor probe(nullptr, dt, {N, K});
            Buffer w = random_buffer(*be, probe.n_bytes(), 1);
            Buffer x = random_buffer(*be, size_t(8 * K) * 4, 2, true), o = be->alloc(size_t(8 * N) * 4);
            for (int64_t M : {1, 8}) {
                Tensor wt = w.view(dt, {N, K}), xt = x.view(DType::F32, {M, K}), ot = o.view(DType::F32, {M, N});
                const double ms = time_ms(*be, 50, [&] { be->matmul(ot, xt, wt); });
                const double gbs = double(probe.n_bytes()) / ms / 1e6;
                std::printf("%-6s %6ldx%-6ld M=%ld %8.1f %10.1f %7.0f%%\n", std::string(dtype_name(dt)).c_str(),
                            long(N), long(K), long(M), ms * 1e3, gbs, 100.0 * gbs / copy_gbs);
            }
        }
    }

    std::printf("\nlarge-batch GEMM (cuBLAS path)\n");
    for (DType dt : {DType::BF16, DType::Q4_K, DType::F32}) {
        const int64_t M = 4096, N = 14336, K = 4096;
        Tensor probe(nullptr, dt, {N, K});
        Buffer w = random_buffer(*be, probe.n_bytes(), 3, dt == DType::F32);
        Buffer x = random_buffer(*be, size_t(M * K) * 4, 4, true), o = be->alloc(size_t(M * N) * 4);
        const double ms = time_ms(*be, 10, [&] {
            be->matmul(o.view(DType::F32, {M, N}), x.view(DType::F32, {M, K}), w.view(dt, {N, K}));
        });
        std::printf("%-6s M=%ld N=%ld K=%ld: %.2f ms, %.0f TFLOP/s\n", std::string(dtype_name(dt)).c_str(), long(M),
                    long(N), long(K), ms, 2.0 * M * N * K / ms / 1e9);
    }

    std::printf("\npaged decode attention (32/8 heads, hd 128, f16 KV, block 16)\n");
    for (auto [n_seqs, ctx] : {std::pair<int, int>{1, 32768}, {1, 4096}, {128, 640}, {64, 4096}}) {
        const int bs = 16, H = 32, KVH = 8, hd = 128, blocks_per = (ctx + bs - 1) / bs, n_blocks = n_seqs * blocks_per;
        Buffer kp = random_buffer(*be, size_t(n_blocks) * bs * KVH * hd * 2, 5);
        Buffer vp = random_buffer(*be, size_t(n_blocks) * bs * KVH * hd * 2, 6);
        std::vector<int32_t> qs(size_t(n_seqs) + 1), lens(size_t(n_seqs), ctx), pos(size_t(n_seqs), ctx - 1);
        std::vector<int32_t> tables(static_cast<size_t>(n_blocks));
        for (int s = 0; s <= n_seqs; s++) qs[size_t(s)] = s;
        for (int i = 0; i < n_blocks; i++) tables[size_t(i)] = i;
        auto upload = [&](const std::vector<int32_t>& v) {
            Buffer buf = be->alloc(v.size() * 4);
            be->copy_from_host(buf.data(), v.data(), v.size() * 4);
            return buf;
        };
        Buffer bq = upload(qs), bl = upload(lens), bp = upload(pos), bt = upload(tables);
        Buffer q = random_buffer(*be, size_t(n_seqs) * H * hd * 4, 7, true), o = be->alloc(size_t(n_seqs) * H * hd * 4);
        AttentionBatch batch;
        batch.n_seqs = n_seqs, batch.n_tokens = n_seqs, batch.max_blocks_per_seq = blocks_per, batch.max_seq_len = ctx;
        batch.query_start = bq.view(DType::I32, {n_seqs + 1});
        batch.seq_lens = bl.view(DType::I32, {n_seqs});
        batch.positions = bp.view(DType::I32, {n_seqs});
        batch.block_tables = bt.view(DType::I32, {n_seqs, blocks_per});
        AttentionParams p;
        p.n_heads = H, p.n_kv_heads = KVH, p.head_dim = hd, p.scale = 0.088f;
        KvLayerView kv{kp.view(DType::F16, {n_blocks, bs, KVH, hd}), vp.view(DType::F16, {n_blocks, bs, KVH, hd}), bs};
        const double ms = time_ms(*be, 10, [&] {
            be->paged_attention(o.view(DType::F32, {n_seqs, H * hd}), q.view(DType::F32, {n_seqs, H * hd}), kv,
                                batch, p);
        });
        const double kv_bytes = 2.0 * double(n_blocks) * bs * KVH * hd * 2;
        std::printf("seqs=%d ctx=%d: %.3f ms, KV %.0f GB/s (%.0f%% of copy)\n", n_seqs, ctx, ms, kv_bytes / ms / 1e6,
                    100.0 * kv_bytes / ms / 1e6 / copy_gbs);
    }
    return 0;
}
