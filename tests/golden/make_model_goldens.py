#!/usr/bin/env python3
"""Makes Osprey's model goldens with Hugging Face transformers (float32), independently of Osprey.

For each model (a GGUF file that transformers loads and dequantizes), the first N+1 tokens of
WikiText-2 (test split) are tokenized with transformers' tokenizer built from the same GGUF, run teacher-forced
through the model in float32, and for every position the top-K next-token log-probabilities are stored.

Output: tests/golden/data/model/<name>.golden (little-endian binary):
    magic "OSPG", u32 version=1, u32 n_tokens (N+1), u32 k
    i32 tokens[N+1]
    i32 top_ids[N][k]        (row i: predictions after tokens[0..i])
    f32 top_logprobs[N][k]   (log-softmax, float32)

Usage: python3 tests/golden/make_model_goldens.py [--models smollm2 gemma3] [--n-tokens 2048] [--k 16]
Needs: torch, transformers (>= 4.50 for gemma3 GGUF), gguf, numpy. Models come from scripts/fetch_models.sh.
"""
import argparse
import os
import struct
import sys
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("OSPREY_MODEL_CACHE", os.path.expanduser("~/.cache/osprey/models"))
TEXT = os.path.join(REPO, "..", "shared", "data", "eval", "wikitext-2-raw-test.txt")

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}


def write_golden(path, tokens, top_ids, top_logprobs):
    n, k = top_ids.shape
    with open(path, "wb") as f:
        f.write(b"OSPG")
        f.write(struct.pack("<III", 1, len(tokens), k))
        f.write(np.asarray(tokens, dtype="<i4").tobytes())
        f.write(np.asarray(top_ids, dtype="<i4").tobytes())
        f.write(np.asarray(top_logprobs, dtype="<f4").tobytes())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--n-tokens", type=int, default=2048)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    text = open(TEXT, encoding="utf-8").read()[:40000]
    for name in args.models:
        fname = MODELS[name]
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(CACHE, gguf_file=fname)
        model = AutoModelForCausalLM.from_pretrained(CACHE, gguf_file=fname, dtype=torch.float32)
        model.eval()
        if hasattr(model.config, "_attn_implementation"):
            model.config._attn_implementation = "eager"
        ids = tok(text, add_special_tokens=True)["input_ids"][: args.n_tokens + 1]
        assert len(ids) == args.n_tokens + 1, len(ids)
        with torch.no_grad():
            logits = model(torch.tensor([ids[:-1]])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        top = torch.topk(logprobs, args.k, dim=-1)
        out = os.path.join(HERE, "data", "model", f"{name}.golden")
        write_golden(out, ids, top.indices.numpy(), top.values.numpy())
        nll = -logprobs[torch.arange(args.n_tokens), torch.tensor(ids[1:])].mean().item()
        print(f"{name}: {len(ids)} tokens, perplexity {np.exp(nll):.3f}, {time.time() - t0:.1f}s -> {out}")


if __name__ == "__main__":
    sys.exit(main())
