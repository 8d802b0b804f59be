#!/usr/bin/env python3
"""Offline throughput of Hugging Face transformers on the workload `osprey bench offline` runs with the random
dataset: N requests of exactly I prompt tokens and O generated tokens (greedy, no early stop), on the same GPU and
weights. transformers has no scheduler, so requests run as static batches of --batch-size (all prompts of a batch
have the same length: no padding waste). Writes one JSON with the same throughput fields as Osprey's.

Usage: transformers_offline.py --model HF_DIR [--num-prompts 1000] [--input-len 1024] [--output-len 128]
                               [--batch-size 64] -o out.json
"""
import argparse
import json
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--num-prompts", type=int, default=1000)
    ap.add_argument("--input-len", type=int, default=1024)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(args.seed)
    prompts = torch.randint(1000, vocab - 1000, (args.num_prompts, args.input_len), generator=g)
    gen = dict(do_sample=False, max_new_tokens=args.output_len, min_new_tokens=args.output_len, pad_token_id=0)
    with torch.no_grad():  # warm-up: one small batch
        model.generate(prompts[:2].cuda(), **dict(gen, max_new_tokens=4, min_new_tokens=4))
    torch.cuda.synchronize()
    n_out = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for b in range(0, args.num_prompts, args.batch_size):
            batch = prompts[b:b + args.batch_size].cuda()
            out = model.generate(batch, attention_mask=torch.ones_like(batch), **gen)
            n_out += (out.shape[1] - batch.shape[1]) * batch.shape[0]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    n_in = args.num_prompts * args.input_len
    res = {"engine": "transformers " + transformers.__version__, "device": torch.cuda.get_device_name(0),
           "num_requests": args.num_prompts, "input_len": args.input_len, "output_len": args.output_len,
           "batch_size": args.batch_size, "elapsed_time": elapsed, "total_input_tokens": n_in,
           "total_output_tokens": n_out, "requests_per_second": args.num_prompts / elapsed,
           "output_tokens_per_second": n_out / elapsed, "tokens_per_second": (n_in + n_out) / elapsed}
    json.dump(res, open(args.output, "w"), indent=2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
