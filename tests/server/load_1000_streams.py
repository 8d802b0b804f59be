#!/usr/bin/env python3
"""Load smoke test (not part of the default run): N concurrent streaming connections to `osprey serve` on loopback.

Opens all N connections first, then sends one streaming /v1/completions request on each and reads every stream to
`data: [DONE]`. Passes when every stream completes with exactly --max-tokens tokens and no connection fails; reports
the server's RSS before/at peak/after, the time taken and the KV blocks left in use.

    python3 tests/server/load_1000_streams.py                 # starts build/osprey serve itself
    python3 tests/server/load_1000_streams.py --url http://127.0.0.1:8000 --pid PID
"""
import argparse
import asyncio
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from conftest import binary_path, model_path  # noqa: E402


def rss_kib(pid, field="VmRSS"):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def metrics(base):
    with urllib.request.urlopen(base + "/metrics", timeout=30) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


async def one_stream(host, port, i, max_tokens, opened, go, results):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        results.append(("connect", str(e)))
        return
    opened[0] += 1
    await go.wait()
    body = json.dumps({"prompt": f"Item {i}:", "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True}).encode()
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    try:
        await writer.drain()
        data = b""
        while b"data: [DONE]" not in data or not data.endswith(b"0\r\n\r\n"):
            chunk = await asyncio.wait_for(reader.read(65536), timeout=600)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            results.append(("status", head[:40].decode(errors="replace")))
            return
        n_text = 0
        finish = None
        for line in rest.split(b"\n"):
            if line.startswith(b"data: {"):
                ev = json.loads(line[6:])
                for ch in ev["choices"]:
                    if ch["text"]:
                        n_text += 1
                    finish = ch["finish_reason"] or finish
        if b"data: [DONE]" not in rest or finish != "length":
            results.append(("incomplete", f"finish={finish}"))
        else:
            results.append(("ok", n_text))
    except Exception as e:  # noqa: BLE001
        results.append(("error", repr(e)))
    finally:
        writer.close()


async def run_load(host, port, n, max_tokens):
    opened = [0]
    go = asyncio.Event()
    results = []
    tasks = [asyncio.create_task(one_stream(host, port, i, max_tokens, opened, go, results)) for i in range(n)]
    while opened[0] + sum(1 for r in results if r[0] == "connect") < n:
        await asyncio.sleep(0.05)
    t0 = time.time()
    go.set()
    await asyncio.gather(*tasks)
    return results, time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="an already running server (default: start one)")
    ap.add_argument("--pid", type=int, help="its pid, for RSS")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="repeat the load; RSS after each round shows leaks")
    ap.add_argument("--kv-cache-memory", default="256MiB",
                    help="KV budget of the server this script starts (a fixed pool, so RSS growth means a leak)")
    ap.add_argument("--threads", default="1", help="model threads of the server this script starts")
    args = ap.parse_args()

    proc = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.pid
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        log = open("/tmp/osprey-load-1000.log", "w")
        proc = subprocess.Popen([str(binary_path()), "serve", "-m", str(model_path()), "--port", str(port),
                                 "--max-model-len", "256", "--max-num-seqs", "128", "--max-waiting", "4096",
                                 "--threads", args.threads, "--kv-cache-memory", args.kv_cache_memory], stdout=log, stderr=subprocess.STDOUT)
        pid = proc.pid
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
    host, port = base.split("//")[1].split(":")
    try:
        rss0 = rss_kib(pid) if pid else -1
        failed = False
        for rnd in range(args.rounds):
            results, secs = asyncio.run(run_load(host, int(port), args.n, args.max_tokens))
            peak = rss_kib(pid, "VmHWM") if pid else -1
            time.sleep(1.0)
            rss1 = rss_kib(pid) if pid else -1
            m = metrics(base)
            ok = [r for r in results if r[0] == "ok"]
            errors = [r for r in results if r[0] != "ok"]
            wrong_len = [r for r in ok if r[1] != args.max_tokens]
            print(f"round {rnd + 1}: streams {args.n}  ok {len(ok)}  errors {len(errors)}  "
                  f"wrong token count {len(wrong_len)}")
            for e in errors[:10]:
                print("  error:", e)
            print(f"  time {secs:.1f} s ({args.n * args.max_tokens / secs:.0f} generated tokens/s over all streams)")
            print(f"  server RSS: before {rss0 / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, after {rss1 / 1024:.1f} MiB")
            print(f"  kv blocks used after: {m.get('osprey_kv_cache_blocks_used')}  running: "
                  f"{m.get('osprey_num_requests_running')}  waiting: {m.get('osprey_num_requests_waiting')}")
            failed |= bool(errors or wrong_len or m.get("osprey_kv_cache_blocks_used") != 0)
        return 1 if failed else 0
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
