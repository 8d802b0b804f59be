#!/usr/bin/env python3
"""Dequantization goldens from real GGUF tensors, produced by gguf-py (gguf.quants.dequantize).

For one tensor of each type (Q4_1, Q8_0 from SmolLM2-135M; Q5_0, Q4_K, Q6_K from Gemma 3 270M) it stores the
raw block bytes of the first 2 rows and gguf-py's dequantized floats, so the C++ test needs no model file.

Format of tests/golden/data/dequant_goldens.bin (little-endian):
  magic b"OSPDQG1\\0", u32 n_entries, then per entry:
  u32 ggml_type, u32 n_cols, u32 n_rows, u32 n_raw_bytes, raw bytes, f32[n_rows * n_cols] expected values.

Usage: python3 tests/golden/make_dequant_goldens.py [model_cache_dir]
"""
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

cache = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "OSPREY_MODEL_CACHE", os.path.expanduser("~/.cache/osprey/models"))
WANT = [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q8_0"),
    ("gemma-3-270m-q4_k_m.gguf", "Q5_0"),
    ("gemma-3-270m-q4_k_m.gguf", "Q4_K"),
    ("gemma-3-270m-q4_k_m.gguf", "Q6_K"),
]
N_ROWS = 2

entries = []
readers = {}
for fname, tname in WANT:
    if fname not in readers:
        readers[fname] = GGUFReader(os.path.join(cache, fname))
    tensor = next(t for t in readers[fname].tensors if t.tensor_type.name == tname)
    raw = np.ascontiguousarray(tensor.data[:N_ROWS])  # [rows, row_bytes] uint8
    vals = dequantize(raw, tensor.tensor_type).astype(np.float32)  # [rows, n_cols]
    n_cols = int(tensor.shape[0])
    assert vals.shape == (N_ROWS, n_cols), vals.shape
    print(f"{fname}: {tensor.name} {tname} cols={n_cols} raw={raw.nbytes}B")
    entries.append((int(tensor.tensor_type), n_cols, raw.tobytes(), vals.tobytes()))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "dequant_goldens.bin")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "wb") as f:
    f.write(b"OSPDQG1\0")
    f.write(struct.pack("<I", len(entries)))
    for ggml_type, n_cols, raw, vals in entries:
        f.write(struct.pack("<IIII", ggml_type, n_cols, N_ROWS, len(raw)))
        f.write(raw)
        f.write(vals)
print(f"wrote {out} ({os.path.getsize(out)} bytes)")
