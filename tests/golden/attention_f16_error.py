#!/usr/bin/env python3
"""Error of attention whose products take f16 inputs (the CUDA tensor-core prefill), measured in numpy.

Models the kernel's roundings: q * scale (* log2 e without a cap) rounded to f16, k and v f16 (the pool), online
softmax over key tiles with the weights p rounded to f16 before P V and before the row sum, all else in f64.
Prints the nmse against exact attention in units of u^2 (u = 2^-11, the f16 unit roundoff) for shapes like the
tests' (q, k uniform in [-2, 2], v in [-1, 1]); attention_ops_test.cpp's kF16ProductsNmse is set from it (about
0.15-0.3 u^2 here; the test allows 4 u^2). Run: python3 tests/golden/attention_f16_error.py
"""
import numpy as np

U = 2.0 ** -11
LOG2E = 1.4426950408889634


def nmse(rng, n, hd, softcap=0.0, window=0, kc=64):
    q = rng.uniform(-2, 2, (n, hd)).astype(np.float32)
    k = rng.uniform(-2, 2, (n, hd)).astype(np.float16).astype(np.float64)
    v = rng.uniform(-1, 1, (n, hd)).astype(np.float16).astype(np.float64)
    scale = 1.0 / np.sqrt(hd)
    qh = (q * (scale if softcap > 0 else scale * LOG2E)).astype(np.float16).astype(np.float64)
    exact, approx = np.zeros((n, hd)), np.zeros((n, hd))
    for i in range(n):
        f = max(0, i - window + 1) if window else 0
        s = (q[i].astype(np.float64) @ k[f:i + 1].T) * scale
        if softcap:
            s = softcap * np.tanh(s / softcap)
        w = np.exp(s - s.max())
        exact[i] = w @ v[f:i + 1] / w.sum()
        s2 = qh[i] @ k[f:i + 1].T
        if softcap:
            s2 = softcap * np.tanh(s2 / softcap) * LOG2E
        m, l, o = -np.inf, 0.0, np.zeros(hd)
        for t0 in range(f // kc * kc, i + 1, kc):
            lo, hi = max(t0, f), min(t0 + kc, i + 1)
            st = s2[lo - f:hi - f]
            m_new = max(m, st.max())
            corr = 2.0 ** (m - m_new)
            p = (2.0 ** (st - m_new)).astype(np.float16).astype(np.float64)
            l, o, m = l * corr + p.sum(), o * corr + p @ v[lo:hi], m_new
        approx[i] = o / l
    return ((approx - exact) ** 2).sum() / (exact ** 2).sum()


def main():
    rng = np.random.default_rng(0)
    for n, hd, cap, win, kc in [(129, 128, 0, 0, 64), (300, 64, 0, 0, 64), (300, 256, 2.0, 0, 32),
                                (1000, 128, 0, 0, 64), (260, 64, 0, 37, 64), (500, 128, 50.0, 100, 64)]:
        e = nmse(rng, n, hd, cap, win, kc)
        print(f"n {n:5d} hd {hd:3d} softcap {cap:4.1f} window {win:3d}: nmse {e:.3e} = {e / U**2:.3f} u^2")


if __name__ == "__main__":
    main()
