#!/usr/bin/env python3
"""Goldens for every supported architecture's Hugging Face path, from transformers (float32).

Each tiny config in tests/golden/data/tiny_archs/ (llama with llama3 rope scaling, qwen2 with qkv bias, qwen3 with
QK-norm, mistral with a sliding window, gemma3 with sliding/global layers) gets seeded random weights from
`osprey synth --config X --dtype f32 --seed 7` (the weights are a pure function of the seed, so the C++ test
re-creates them), then transformers runs 96 random token ids teacher-forced and the top-16 next-token
log-probabilities are stored in the model-golden format (see make_model_goldens.py) as <name>.golden.

Usage: python3 tests/golden/make_arch_goldens.py [--binary build/osprey]
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_model_goldens import write_golden  # noqa: E402

SEED = 7
N_TOKENS = 96
K = 16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(HERE, "..", "..", "build", "osprey"))
    args = ap.parse_args()
    for cfg in sorted(glob.glob(os.path.join(HERE, "data", "tiny_archs", "*.json"))):
        name = os.path.splitext(os.path.basename(cfg))[0]
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([args.binary, "synth", "--config", cfg, "--dtype", "f32", "--seed", str(SEED), "-o", d],
                           check=True, stdout=subprocess.DEVNULL)
            model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
            model.eval()
            vocab = model.config.vocab_size
            ids = np.random.default_rng(SEED).integers(3, vocab, size=N_TOKENS + 1).tolist()
            with torch.no_grad():
                logits = model(torch.tensor([ids[:-1]])).logits[0].float()
            top = torch.topk(torch.log_softmax(logits, dim=-1), K, dim=-1)
            out = os.path.join(HERE, "data", "tiny_archs", f"{name}.golden")
            write_golden(out, ids, top.indices.numpy(), top.values.numpy())
            print(f"{name}: {type(model).__name__} -> {out}")


if __name__ == "__main__":
    main()
