#!/usr/bin/env python3
"""Checks the layer DAG of docs/architecture.md: every #include "layer/..." in src/<layer>/ must name the layer itself
or one it may depend on. Also warns about files over the soft size limit (800 lines) and fails over the hard one
(1,500). Exit status 1 on a violation."""
import os
import re
import sys

ALLOWED = {
    "core": set(),
    "formats": {"core"},
    "backend": {"core"},
    "tokenizer": {"core", "formats"},
    "kv": {"core", "backend"},
    "model": {"core", "backend", "formats", "kv"},
    "engine": {"core", "backend", "formats", "kv", "model", "tokenizer"},
    "server": {"core", "engine", "tokenizer", "backend", "formats"},
    "bench": {"core", "engine", "tokenizer", "backend", "formats"},
    "cli": {"core", "backend", "formats", "tokenizer", "kv", "model", "engine", "server", "bench"},
}
# Within backend/, the CPU and CUDA backends may not include each other.
SUBLAYER_FORBIDDEN = {("backend/cpu", "backend/cuda"), ("backend/cuda", "backend/cpu")}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    bad = []
    for dirpath, _, files in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            continue
        layer = rel_dir.split(os.sep)[0]
        if layer not in ALLOWED:
            bad.append(f"src/{rel_dir}: unknown layer '{layer}' (add it to tools/check_layers.py and the docs)")
            continue
        for f in files:
            if not f.endswith((".h", ".cpp", ".cu", ".cuh")):
                continue
            path = os.path.join(dirpath, f)
            lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
            if len(lines) > 1500:
                bad.append(f"src/{rel_dir}/{f}: {len(lines)} lines (hard limit 1,500)")
            elif len(lines) > 800:
                print(f"warning: src/{rel_dir}/{f}: {len(lines)} lines (soft limit 800)")
            for n, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if not m or "/" not in m.group(1):
                    continue
                target = m.group(1).split("/")[0]
                if target not in ALLOWED:
                    continue
                if target != layer and target not in ALLOWED[layer]:
                    bad.append(f"src/{rel_dir}/{f}:{n}: layer '{layer}' includes '{m.group(1)}' from layer '{target}'")
                sub = "/".join(rel_dir.split(os.sep)[:2])
                for a, b in SUBLAYER_FORBIDDEN:
                    if sub == a and m.group(1).startswith(b + "/"):
                        bad.append(f"src/{rel_dir}/{f}:{n}: {a} includes {m.group(1)}")
    for b in bad:
        print("error:", b)
    print(f"layer check: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
