#!/usr/bin/env python3
"""Error of the CUDA small-batch GEMV's integer path (src/backend/cuda/gemv_int.cuh), measured in numpy.

The kernel quantizes each row of x to int16 per 32-element block in f32 (amax, id = 32767 / amax, q = round to
nearest even of x * id clamped to +-32767, d = amax / 32767) and then sums exact integer products scaled in f32.
This models that rounding (the f32 sums add ~1e-13) and prints the nmse of x . w^T against the exact product for
the tests' inputs (x uniform in [-1, 1], M = 8, N = 64; weights uniform in [-1, 1], with and without a mean of
0.5 as min/bias types have), plus the per-element E[e^2] / E[x^2] that predicts it (step^2 / 12 / E[x^2] with
step = amax / 32767). backend_ops_test.cpp's kGemvIntThreshold (1e-8) is set from it (worst here ~4e-10).
Run: python3 tests/golden/gemv_xquant_model.py
"""
import numpy as np


def quant_x(x):
    xb = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(xb).max(axis=1, keepdims=True).astype(np.float32)
    safe = np.where(amax > 0, amax, np.float32(1))
    inv = np.where(amax > 0, np.float32(32767) / safe, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(xb * inv), -32767, 32767)
    d = (amax / np.float32(32767)).astype(np.float32)
    return (q.astype(np.float64) * d.astype(np.float64)).reshape(x.shape)


def main():
    rng = np.random.default_rng(0)
    overall = 0.0
    for K in (2048, 4096, 14336):
        worst = 0.0
        for _ in range(5):
            for mean in (0.0, 0.5):
                x = rng.uniform(-1, 1, (8, K)).astype(np.float32)
                w = (rng.uniform(-1, 1, (64, K)) + mean).astype(np.float32).astype(np.float64)
                ref = x.astype(np.float64) @ w.T
                got = quant_x(x) @ w.T
                worst = max(worst, ((got - ref) ** 2).sum() / (ref ** 2).sum())
        overall = max(overall, worst)
        print(f"K={K:6d}: worst nmse {worst:.3e}")
    x = rng.uniform(-1, 1, (100000, 32)).astype(np.float32)
    e = quant_x(x) - x
    print(f"E[e^2]/E[x^2] = {(e ** 2).mean() / (x.astype(np.float64) ** 2).mean():.3e} "
          f"(model step^2/12/E[x^2] = {(1 / 32767) ** 2 / 12 * 3:.3e})")
    print(f"worst {overall:.3e}; test threshold 1e-8 = {1e-8 / overall:.0f}x")


if __name__ == "__main__":
    main()
