#!/usr/bin/env python3
"""TTFT of a request whose ~1,000-token system prompt is already in the prefix cache vs the same request cold.

Starts nothing: point it at a running `osprey serve` (or any OpenAI server). Each trial uses a fresh system prompt
(cold: nothing cached), then repeats it with another question (warm: the system prompt's blocks are cached).
Usage: python3 bench/prefix_cache_ttft.py --base-url http://127.0.0.1:8000/v1 --model NAME [--trials 5]
"""
import argparse
import json
import statistics
import time

from openai import OpenAI

WORDS = ("policy assistant answer precise concise helpful reference document section clause customer account "
         "service support review detail summary context guideline example").split()


def ttft(client, model, system, question):
    t0 = time.perf_counter()
    stream = client.chat.completions.create(model=model, stream=True, max_tokens=4, temperature=0,
                                            messages=[{"role": "system", "content": system},
                                                      {"role": "user", "content": question}])
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
    return first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--words", type=int, default=1000, help="system prompt words (~1,010 tokens with SmolLM2's tokenizer)")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    client = OpenAI(base_url=args.base_url, api_key="none")
    cold, warm = [], []
    for trial in range(args.trials):
        system = f"Trial {trial}. " + " ".join(WORDS[(i * 7 + trial) % len(WORDS)] for i in range(args.words))
        cold.append(ttft(client, args.model, system, "What is the first word?"))
        warm.append(ttft(client, args.model, system, "What is the last word?"))
    result = {"cold_ttft_s": cold, "warm_ttft_s": warm, "median_cold_s": statistics.median(cold),
              "median_warm_s": statistics.median(warm),
              "speedup": statistics.median(cold) / statistics.median(warm)}
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}, indent=2))
    if args.output:
        json.dump(result, open(args.output, "w"), indent=2)


if __name__ == "__main__":
    main()
