#!/usr/bin/env python3
"""Hugging Face transformers on the same GPU and weights as Osprey: teacher-forced agreement with Osprey's scores
(`osprey run --score-out`), and transformers' own batch-1 decode and long-prefill speed, plus the hardware
references measured in the same run (device-to-device copy bandwidth, bf16 matrix-multiply rate) and the bytes
one decode step reads (every weight except the embedding table). Writes one JSON.

The agreement is reported against transformers in bf16 and against the same bf16 weights computed in float32.

Usage: transformers_compare.py --model HF_DIR --score osprey_score.json [--text FILE] -o out.json
"""
import argparse
import glob
import json
import os
import time

import torch
import transformers
from safetensors import safe_open


def timed(fn, reps=10, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def hardware_refs():
    n = 1 << 30  # 2 GiB of bf16
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a))
    copy_bw = 2 * a.numel() * a.element_size() / t  # bytes read + written
    del a, b
    m = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    t = timed(lambda: m @ m)
    return {"copy_bytes_per_s": copy_bw, "bf16_matmul_flops": 2 * 8192 ** 3 / t}


def decode_step_bytes(model_dir):
    total = 0
    for f in glob.glob(os.path.join(model_dir, "*.safetensors")):
        with safe_open(f, "pt") as sf:
            for name in sf.keys():
                if "embed_tokens" in name:
                    continue  # one row is read per token
                sl = sf.get_slice(name)
                numel = 1
                for d in sl.get_shape():
                    numel *= d
                total += numel * {"BF16": 2, "F16": 2, "F32": 4}[sl.get_dtype()]
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--score", required=True)
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--decode-prompt", type=int, default=512)
    ap.add_argument("--decode-new", type=int, default=128)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "transformers": transformers.__version__}
    out.update(hardware_refs())
    out["decode_step_bytes"] = decode_step_bytes(args.model)
    out["roofline_tokens_per_s"] = out["copy_bytes_per_s"] / out["decode_step_bytes"]

    score = json.load(open(args.score))
    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    out["hf_load_seconds"] = time.perf_counter() - t0
    ids = torch.tensor([score["tokens"]], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    top1 = logits.argmax(-1).tolist()
    lp = torch.log_softmax(logits, -1)
    lp_next = lp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].tolist()
    n = len(top1)
    agree = sum(int(a == b) for a, b in zip(top1, score["top1"])) / n
    dlp = [abs(a - b) for a, b in zip(lp_next, score["logprob_next"])]
    out["agreement"] = {"positions": n, "top1_agreement": agree, "mean_abs_logprob_diff": sum(dlp) / len(dlp),
                        "max_abs_logprob_diff": max(dlp), "osprey_backend": score.get("backend")}
    del logits, lp

    # transformers' own speed on the same weights: batch-1 greedy decode after a 512-token prompt, long prefill.
    prompt = ids[:, : args.decode_prompt]
    gen = dict(do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=8, min_new_tokens=8, **gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, min_new_tokens=1, **gen)
        torch.cuda.synchronize()
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.generate(prompt, max_new_tokens=args.decode_new, min_new_tokens=args.decode_new, **gen)
        torch.cuda.synchronize()
        tn = time.perf_counter() - t0
    out["hf_decode_tokens_per_s"] = (args.decode_new - 1) / (tn - t1)
    long_ids = ids.repeat(1, (args.prefill + ids.shape[1] - 1) // ids.shape[1])[:, : args.prefill]
    with torch.no_grad():
        t = timed(lambda: model(long_ids, logits_to_keep=1), reps=3, warmup=1)
    out["hf_prefill_tokens_per_s"] = args.prefill / t

    # The same bf16 weights computed in float32: the precise reference. With random weights the next-token
    # distributions are nearly flat, so bf16 rounding alone flips many top-1 choices; this separates that noise
    # from Osprey's own error.
    del model
    torch.cuda.empty_cache()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, device_map="cuda")
    model.eval()
    with torch.no_grad():
        logits32 = model(ids).logits[0].float()
    top1_32 = logits32.argmax(-1).tolist()
    lp32 = torch.log_softmax(logits32, -1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]].tolist()
    d32 = [abs(a - b) for a, b in zip(lp32, score["logprob_next"])]
    out["agreement_f32_reference"] = {
        "osprey_top1_agreement": sum(int(a == b) for a, b in zip(top1_32, score["top1"])) / n,
        "osprey_mean_abs_logprob_diff": sum(d32) / len(d32),
        "hf_bf16_vs_hf_f32_top1_agreement": sum(int(a == b) for a, b in zip(top1_32, top1)) / n,
    }
    json.dump(out, open(args.output, "w"), indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
