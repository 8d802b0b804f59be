#!/usr/bin/env python3
"""Writes the small safetensors fixtures under tests/golden/data/safetensors/ with the reference `safetensors`
package (numpy API), independently of Osprey's reader. Run from anywhere: python3 tests/golden/make_safetensors_fixtures.py

Files (all tiny; values are simple formulas the C++ tests recompute):
  small.safetensors            f32 "a" [2,3] = arange(6)*0.5-1; f16 "b" [4] = [1,-2,0.5,65504]; bf16 "c" [2,2]
                               = [1,-1.5,3.140625,0] (stored as raw bf16 bits); i32 "d" [3] = [-7,0,123456789];
                               i64 "e" [] scalar 2**40+3; u8 "f" [5] = 0..4; f64 "g" [2] = [0.1, -1e300];
                               metadata {"format": "pt", "note": "osprey fixture"}
  sharded/                     model.safetensors.index.json + model-00001-of-00002.safetensors ("x.weight" f32 [2,2]
                               = arange(4), "y.bias" f32 [3] = [7,8,9]) + model-00002-of-00002.safetensors
                               ("z.weight" f16 [1,4] = [0.25,0.5,0.75,1])
  sharded_missing/             the same index, but the second shard is absent
  single/model.safetensors     a copy of small.safetensors (a one-file model folder)
"""
import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "safetensors")


def bf16(values):
    """float32 -> raw bfloat16 bits (the values chosen are exact in bf16, so truncation is exact)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32) >> 16
    return bits.astype(np.uint16)


def write_bf16_file(path, tensors, metadata):
    """numpy has no bfloat16: write the small file by hand with the reference package, then patch the dtype.
    save_file stores "c" as U16 of the right byte size; we rewrite the header's dtype string to BF16 (same length
    budget handled by re-serialising the header) and check the reference loader reads it back as bfloat16 bits."""
    save_file(tensors, path, metadata=metadata)
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["c"]["dtype"] = "BF16"
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text.encode())
        f.write(raw[8 + n:])


def main():
    os.makedirs(OUT, exist_ok=True)
    small = {
        "a": (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3),
        "b": np.array([1, -2, 0.5, 65504], dtype=np.float16),
        "c": bf16([[1, -1.5], [3.140625, 0]]),
        "d": np.array([-7, 0, 123456789], dtype=np.int32),
        "e": np.array(2**40 + 3, dtype=np.int64),
        "f": np.arange(5, dtype=np.uint8),
        "g": np.array([0.1, -1e300], dtype=np.float64),
    }
    path = os.path.join(OUT, "small.safetensors")
    write_bf16_file(path, small, {"format": "pt", "note": "osprey fixture"})

    # Cross-check with the reference reader (torch, if present, to see BF16 as bfloat16).
    from safetensors import safe_open
    try:
        import torch  # noqa: F401
        with safe_open(path, framework="pt") as f:
            c = f.get_tensor("c").float().numpy()
        assert np.array_equal(c, np.array([[1, -1.5], [3.140625, 0]], dtype=np.float32)), c
    except ImportError:
        pass
    with safe_open(path, framework="np") as f:
        assert np.array_equal(f.get_tensor("a"), small["a"])

    single = os.path.join(OUT, "single")
    os.makedirs(single, exist_ok=True)
    shutil.copy(path, os.path.join(single, "model.safetensors"))

    shard1 = {"x.weight": np.arange(4, dtype=np.float32).reshape(2, 2), "y.bias": np.array([7, 8, 9], np.float32)}
    shard2 = {"z.weight": np.array([[0.25, 0.5, 0.75, 1]], dtype=np.float16)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = {
        "metadata": {"total_size": 4 * 4 + 3 * 4 + 4 * 2},
        "weight_map": {"x.weight": names[0], "y.bias": names[0], "z.weight": names[1]},
    }
    for sub, with_second in (("sharded", True), ("sharded_missing", False)):
        d = os.path.join(OUT, sub)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        save_file(shard1, os.path.join(d, names[0]), metadata={"format": "pt"})
        if with_second:
            save_file(shard2, os.path.join(d, names[1]), metadata={"format": "pt"})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)


if __name__ == "__main__":
    main()
