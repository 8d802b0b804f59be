#!/usr/bin/env python3
"""CPU speed of `osprey run`, measured like llama-bench: a 512-token prompt (pp512) and 128 decoded tokens (tg128),
one sequence, N threads, a warm-up run then the median of repetitions. Writes a JSON result.

Usage: python3 bench/cpu_run_bench.py -m MODEL [-m MODEL ...] [--threads 2] [--reps 3] [-o bench/results/cpu.json]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(REPO, "..", "shared", "data", "eval", "wikitext-2-raw-test.txt")


def run_once(binary, model, threads, pp, tg):
    with tempfile.NamedTemporaryFile(suffix=".json") as stats:
        cmd = [binary, "run", "-m", model, "-f", TEXT, "--prompt-tokens", str(pp), "-n", str(tg), "--ignore-eos",
               "--no-bos", "-t", str(threads), "--stats-json", stats.name]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.load(open(stats.name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", action="append", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--pp", type=int, default=512)
    ap.add_argument("--tg", type=int, default=128)
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "osprey"))
    ap.add_argument("-o", "--output", default=os.path.join(REPO, "bench", "results", "cpu_run.json"))
    args = ap.parse_args()
    results = []
    for model in args.model:
        run_once(args.binary, model, args.threads, args.pp, args.tg)  # warm-up (page cache, CPU clocks)
        runs = [run_once(args.binary, model, args.threads, args.pp, args.tg) for _ in range(args.reps)]
        row = {
            "model": os.path.basename(model.rstrip("/")),
            "threads": args.threads,
            "load_seconds": statistics.median(r["load_seconds"] for r in runs),
            f"pp{args.pp}_tokens_per_second": statistics.median(r["prompt_tokens_per_second"] for r in runs),
            f"tg{args.tg}_tokens_per_second": statistics.median(r["decode_tokens_per_second"] for r in runs),
            "backend": runs[0]["backend"],
            "runs": runs,
        }
        results.append(row)
        print(f"{row['model']}: load {row['load_seconds']:.2f} s, pp{args.pp} "
              f"{row[f'pp{args.pp}_tokens_per_second']:.1f} t/s, tg{args.tg} "
              f"{row[f'tg{args.tg}_tokens_per_second']:.1f} t/s ({row['backend']})")
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
