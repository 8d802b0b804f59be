"""`osprey bench` end to end against `osprey serve` on SmolLM2: 50 ShareGPT prompts must all complete, and the result
file must carry vLLM's keys; `osprey bench offline` runs the engine in process under both scheduling policies.

Run: OSPREY_BINARY=build/osprey python3 -m pytest -q tests/bench
(the binary defaults to build/osprey; the model comes from $OSPREY_MODEL_CACHE, default ~/.cache/osprey/models;
tests skip when either is missing or the binary has no `bench` command)."""
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("OSPREY_BINARY", REPO / "build" / "osprey"))
MODEL = pathlib.Path(os.environ.get("OSPREY_MODEL_CACHE", os.path.expanduser("~/.cache/osprey/models"))) / \
    "SmolLM2-135M-Instruct.Q4_1.gguf"
SHAREGPT = REPO.parent / "shared" / "data" / "prompts" / "sharegpt_v3_filtered_500.json"


def has_bench():
    if not BIN.exists():
        return False
    return subprocess.run([str(BIN), "bench", "--help"], capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.skipif(not has_bench(), reason=f"{BIN} missing or built without `osprey bench`"),
    pytest.mark.skipif(not MODEL.exists(), reason=f"model not fetched: {MODEL} (make models)"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="osprey-bench-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen([str(BIN), "serve", "-m", str(MODEL), "--port", str(port),
                             "--threads", os.environ.get("OSPREY_SERVE_THREADS", "1")],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail("osprey serve exited:\n" + pathlib.Path(log.name).read_text(errors="replace"))
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() > deadline:
                pytest.fail("osprey serve did not become healthy")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.unlink(log.name)


@pytest.mark.skipif(not SHAREGPT.exists(), reason=f"dataset missing: {SHAREGPT}")
def test_fifty_sharegpt_prompts_complete_without_errors(server, tmp_path):
    result, report = tmp_path / "result.json", tmp_path / "report.html"
    out = subprocess.run(
        [str(BIN), "bench", "serve", "--base-url", server, "--model", MODEL.name, "--tokenizer", str(MODEL),
         "--endpoint", "/v1/completions", "--dataset", "sharegpt", "--dataset-path", str(SHAREGPT),
         "--num-prompts", "50", "--sharegpt-output-len", "16", "--max-concurrency", "8", "--seed", "0",
         "--percentiles", "50,90,99", "--goodput", "ttft:60000", "tpot:5000", "--gpu-cost-per-hour", "0.10",
         "--save-result", str(result), "--report", str(report)],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Serving Benchmark Result" in out.stdout
    r = json.loads(result.read_text())
    assert r["completed"] == 50, r["errors"]
    assert r["failed"] == 0
    assert all(e == "" for e in r["errors"])
    assert r["num_prompts"] == 50 and r["max_concurrency"] == 8 and r["request_rate"] == "inf"
    assert r["backend"] == "openai" and r["model_id"] == MODEL.name
    assert len(r["ttfts"]) == len(r["itls"]) == len(r["generated_texts"]) == 50
    # Output counts come from the server's usage: at most the 16 asked for, and every request produced one.
    assert all(1 <= n <= 16 for n in r["output_lens"])
    assert r["total_output_tokens"] == sum(r["output_lens"])
    assert r["total_input_tokens"] == sum(r["input_lens"]) and all(n >= 4 for n in r["input_lens"])
    for m in ("ttft", "tpot", "itl", "e2el"):
        for k in ("mean", "median", "std", "p50", "p90", "p99"):
            assert f"{k}_{m}_ms" in r, f"{k}_{m}_ms"
    assert 0 < r["mean_ttft_ms"] <= r["p99_ttft_ms"] <= r["p99_e2el_ms"] + 1e-6
    d = r["duration"]
    assert r["request_throughput"] == pytest.approx(50 / d)
    assert r["output_throughput"] == pytest.approx(r["total_output_tokens"] / d)
    assert r["cost_per_1m_output_tokens"] == pytest.approx(0.10 / (r["output_throughput"] * 3600) * 1e6)
    html = report.read_text()
    assert 'id="chart-cdf-ttft"' in html and "<script" not in html


@pytest.mark.parametrize("scheduling", ["continuous", "static"])
def test_offline_runs_the_engine_in_process(scheduling, tmp_path):
    result = tmp_path / "offline.json"
    out = subprocess.run(
        [str(BIN), "bench", "offline", "-m", str(MODEL), "--input-len", "32", "--output-len", "8",
         "--num-prompts", "6", "--max-num-seqs", "4", "--scheduling", scheduling, "--threads", "1",
         "--save-result", str(result)],
        capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(result.read_text())
    assert r["scheduling"] == scheduling
    assert r["num_requests"] == 6 and r["failed"] == 0
    assert r["total_output_tokens"] == 6 * 8  # ignore_eos: every request generates its full length
    assert r["total_input_tokens"] >= 6 * 32
    assert r["output_tokens_per_second"] == pytest.approx(48 / r["elapsed_time"])
    assert r["requests_per_second"] == pytest.approx(6 / r["elapsed_time"])
    assert r["total_num_tokens"] == r["total_input_tokens"] + r["total_output_tokens"]
    assert r["mean_ttft_ms"] <= r["mean_e2el_ms"]


def test_offline_sharegpt_varied_output_lengths_and_kv_waste(tmp_path):
    if not SHAREGPT.exists():
        pytest.skip(f"dataset missing: {SHAREGPT}")
    result = tmp_path / "offline.json"
    cmd = [str(BIN), "bench", "offline", "-m", str(MODEL), "--dataset", "sharegpt", "--dataset-path", str(SHAREGPT),
           "--num-prompts", "6", "--max-num-seqs", "6", "--threads", "1", "--seed", "3"]
    out = subprocess.run(cmd + ["--output-len", "16", "--random-range-ratio", "0.9", "--save-result", str(result)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    r = json.loads(result.read_text())
    assert r["num_requests"] == 6 and r["failed"] == 0
    # Each request asks for round(16 * u), u uniform in [0.1, 1.9]: in [2, 30], and with this seed not all 16.
    assert 6 * 2 <= r["total_output_tokens"] <= 6 * 30
    assert r["total_output_tokens"] != 6 * 16
    # KV waste: allocated-but-unfilled slots over allocated, summed over the steps.
    assert 0 < r["kv_slots_used"] <= r["kv_slots_allocated"]
    assert r["kv_waste_ratio"] == pytest.approx(1 - r["kv_slots_used"] / r["kv_slots_allocated"])
    assert 0 <= r["kv_waste_ratio"] < 1
    # This prompt file has no replies: without an output length every conversation is unusable, and it says how.
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "--sharegpt-output-len" in bad.stdout + bad.stderr
