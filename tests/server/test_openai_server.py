"""`osprey serve` against the official openai client: completions and chat, streaming, n, stop, seeds, usage,
logprobs, every error status, concurrency, disconnects, preemption under a tiny KV pool, and SIGTERM drain.

Run:  OSPREY_BINARY=build/osprey python3 -m pytest -q tests/server
"""
import concurrent.futures as cf
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import MODEL_NAME, binary_path, model_path

PROMPT = "The capital of France is"


def tokenize(text, parse_special=False, bos=True):
    cmd = [str(binary_path()), "tokenize", "-m", str(model_path()), "--ids", text]
    if parse_special:
        cmd.append("--parse-special")
    if not bos:
        cmd.append("--no-bos")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]


def chat_template():
    from gguf import GGUFReader

    f = GGUFReader(str(model_path())).fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode()


def render_chat(messages):
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(chat_template()).render(messages=messages, add_generation_prompt=True,
                                                   bos_token="<|im_start|>", eos_token="<|im_end|>")


def raw(server, method, path, body=None, headers=None):
    """(status, headers, parsed JSON or text) without the openai client."""
    req = urllib.request.Request(server.base + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def post_json(server, path, obj, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    status, hdrs, text = raw(server, "POST", path, json.dumps(obj).encode() if not isinstance(obj, bytes) else obj, h)
    return status, hdrs, (json.loads(text) if text else None)


# ---- basics -------------------------------------------------------------------------------------------------------

def test_models_and_health(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == [MODEL_NAME]
    assert raw(server, "GET", "/health")[0] == 200


def test_completion_usage_exact(server):
    r = server.client().completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, temperature=0,
                                           extra_body={"ignore_eos": True})
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == MODEL_NAME
    assert len(r.choices) == 1 and r.choices[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(tokenize(PROMPT))
    assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + 8


def test_completion_token_prompt_matches_text_prompt(server):
    c = server.client()
    a = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0)
    b = c.completions.create(model=MODEL_NAME, prompt=tokenize(PROMPT), max_tokens=6, temperature=0)
    d = c.completions.create(model=MODEL_NAME, prompt=[PROMPT], max_tokens=6, temperature=0)
    assert a.choices[0].text == b.choices[0].text == d.choices[0].text
    assert a.usage.prompt_tokens == b.usage.prompt_tokens


def test_chat_usage_matches_template(server):
    messages = [{"role": "user", "content": "What is 2+2?"}]
    r = server.client().chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    expected = tokenize(render_chat(messages), parse_special=True, bos=False)
    assert r.usage.prompt_tokens == len(expected)
    assert r.usage.completion_tokens <= 10


def test_streaming_equals_non_streaming(server):
    c = server.client()
    messages = [{"role": "user", "content": "Name three colors."}]
    full = c.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0)
    chunks = list(c.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert len({ch.id for ch in chunks}) == 1

    plain = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0)
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=MODEL_NAME, prompt=PROMPT, max_tokens=10, temperature=0, stream=True) if ch.choices)
    assert streamed == plain.choices[0].text


def test_n_choices(server):
    r = server.client().completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=5, n=2, temperature=1.0,
                                           seed=7, extra_body={"ignore_eos": True})
    assert sorted(ch.index for ch in r.choices) == [0, 1]
    assert r.usage.completion_tokens == 10
    streamed = server.client().chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, n=2, stream=True,
        extra_body={"ignore_eos": True})
    finish = {}
    for ch in streamed:
        for choice in ch.choices:
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert finish == {0: "length", 1: "length"}


def test_stop_strings_and_max_tokens(server):
    c = server.client()
    base = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0,
                                extra_body={"ignore_eos": True})
    text = base.choices[0].text
    assert base.usage.completion_tokens == 16 and base.choices[0].finish_reason == "length"
    # a stop string from the middle of the greedy text cuts it there
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    cut = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop, "zzzz"],
                               extra_body={"ignore_eos": True})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[:text.index(stop)]
    one = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1, temperature=0)
    assert one.usage.completion_tokens == 1 and one.choices[0].finish_reason == "length"


def test_seeds_reproducible(server):
    c = server.client()

    def sample(seed):
        return c.completions.create(model=MODEL_NAME, prompt="Once upon a time", max_tokens=12, temperature=1.0,
                                    seed=seed, extra_body={"ignore_eos": True}).choices[0].text

    a, b = sample(1234), sample(1234)
    assert a == b
    assert len({a, sample(1), sample(2), sample(3)}) > 1


def test_logprobs(server):
    c = server.client()
    r = c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3,
                             extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, val, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert val <= 0 and 1 <= len(top) <= 3
        assert max(top.values()) == pytest.approx(val, abs=1e-5)  # greedy: the chosen token is the best
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0].encode())

    ch = c.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                   temperature=0, logprobs=True, top_logprobs=2)
    content = ch.choices[0].logprobs.content
    assert len(content) == ch.usage.completion_tokens or len(content) == ch.usage.completion_tokens - 1
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 2
        assert bytes(entry.bytes) == entry.token.encode()
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob


# ---- errors -------------------------------------------------------------------------------------------------------

def test_error_statuses(server):
    c = server.client()
    status, _, body = post_json(server, "/v1/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, _, body = post_json(server, "/v1/completions", {"prompt": "x", "temperature": "hot"})
    assert status == 400 and body["error"]["param"] == "temperature"
    status, _, body = post_json(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]})
    assert status == 400 and body["error"]["param"] == "messages[0].content"
    with pytest.raises(openai.NotFoundError) as e:
        c.completions.create(model="gpt-17", prompt="x", max_tokens=1)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=5000)
    msg = e.value.body["message"]
    assert "1024" in msg and str(len(tokenize(PROMPT)) + 5000) in msg and e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1, n=100)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1, stop=["a", "b", "c", "d", "e"])
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=1, echo=True)
    status, _, body = post_json(server, "/v1/completions", {"prompt": "x" * (5 << 20)})
    assert status == 413 and body["error"]["code"] == "request_too_large"
    assert raw(server, "GET", "/v1/nowhere")[0] == 404
    status, hdrs, _ = raw(server, "GET", "/v1/chat/completions")
    assert status == 405 and hdrs.get("Allow") == "POST"
    assert raw(server, "GET", "/health")[0] == 200  # still serving


def test_api_key(start_server):
    s = start_server("--max-model-len", "256", api_key="sekrit")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=s.base + "/v1", api_key="wrong", max_retries=0).models.list()
    assert raw(s, "GET", "/v1/models")[0] == 401
    assert s.client().completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=2).usage.completion_tokens <= 2
    assert raw(s, "GET", "/health")[0] == 200


def test_queue_full_429(start_server):
    s = start_server("--max-model-len", "256", "--max-waiting", "1", "--max-num-seqs", "1")

    def one(i):
        return post_json(s, "/v1/completions", {"prompt": f"Story {i}:", "max_tokens": 24, "ignore_eos": True})

    with cf.ThreadPoolExecutor(24) as ex:
        results = list(ex.map(one, range(24)))
    statuses = [r[0] for r in results]
    assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}, statuses
    r429 = next(r for r in results if r[0] == 429)
    assert r429[1].get("Retry-After") == "1" and r429[2]["error"]["type"] == "rate_limit_error"
    for status, _, body in results:
        if status == 200:
            assert body["usage"]["completion_tokens"] == 24
    assert s.metrics()['osprey_requests_total{status="429"}'] == statuses.count(429)


# ---- concurrency --------------------------------------------------------------------------------------------------

def _stream_text(client, prompt, max_tokens):
    text, finish = "", None
    for ch in client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                        stream=True, extra_body={"ignore_eos": True}):
        for choice in ch.choices:
            text += choice.text
            finish = choice.finish_reason or finish
    return text, finish


def test_64_concurrent_streams_match_alone(server):
    prompts = [f"Question {k}: what is {k} plus {k}? Answer:" for k in range(8)]
    c = server.client()
    alone = {p: c.completions.create(model=MODEL_NAME, prompt=p, max_tokens=10, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text for p in prompts}
    jobs = [prompts[i % 8] for i in range(64)]
    with cf.ThreadPoolExecutor(64) as ex:
        results = list(ex.map(lambda p: _stream_text(server.client(), p, 10), jobs))
    for p, (text, finish) in zip(jobs, results):
        assert finish == "length"
        assert text == alone[p], (p, text, alone[p])


def _wait_metric(server, name, pred, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = server.metrics().get(name)
        if v is not None and pred(v):
            return v
        time.sleep(0.05)
    return server.metrics().get(name)


def _disconnect_mid_stream(server, max_tokens):
    """A raw streaming request whose client hangs up after three events: its blocks and its slot must be freed."""
    body = json.dumps({"prompt": PROMPT, "max_tokens": max_tokens, "stream": True, "ignore_eos": True}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += sock.recv(4096)
    assert server.metrics()["osprey_kv_cache_blocks_used"] > 0
    sock.close()
    assert _wait_metric(server, "osprey_kv_cache_blocks_used", lambda v: v == 0, timeout=5) == 0
    assert _wait_metric(server, "osprey_num_requests_running", lambda v: v == 0, timeout=5) == 0


def test_disconnect_frees_blocks(server):
    _disconnect_mid_stream(server, 600)


def test_tiny_kv_pool_preempts_and_matches(start_server):
    # 46,080 bytes per token (SmolLM2, f32 K and V) x 256 tokens = 16 blocks of 16: room for ~2 of these sequences.
    s = start_server("--max-model-len", "128", "--block-size", "16", "--kv-cache-memory", str(46080 * 256),
                     "--max-num-seqs", "16", "--no-enable-prefix-caching")
    prompts = [f"List {k} animals:" for k in range(4)]
    c = s.client()
    alone = {p: c.completions.create(model=MODEL_NAME, prompt=p, max_tokens=80, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text for p in prompts}
    assert s.metrics()["osprey_num_preemptions_total"] == 0
    jobs = [prompts[i % 4] for i in range(16)]
    with cf.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda p: _stream_text(s.client(), p, 80), jobs))
    for p, (text, finish) in zip(jobs, results):
        assert finish == "length" and text == alone[p]
    assert s.metrics()["osprey_num_preemptions_total"] > 0
    assert s.metrics()["osprey_kv_cache_blocks_used"] == 0


def test_sigterm_drains(start_server):
    s = start_server("--max-model-len", "256", "--drain-timeout", "30")
    result = {}

    def stream():
        result["text"], result["finish"] = _stream_text(s.client(), PROMPT, 48)

    t = threading.Thread(target=stream)
    t.start()
    _wait_metric(s, "osprey_num_requests_running", lambda v: v >= 1, timeout=10)
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=60)
    assert result.get("finish") == "length", s.log_text()
    assert s.proc.wait(timeout=30) == 0, s.log_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1)


def test_async_scheduling_matches_and_frees_blocks(server, start_server):
    """The same answers with --async-scheduling on (the GPU default; off on the CPU, which has nothing to overlap):
    concurrent greedy streams with stop strings and max_tokens, logprobs (synchronous steps mixed in), a tiny KV
    pool that preempts, and a disconnect mid-stream that frees its blocks."""
    s = start_server("--async-scheduling", "on", "--max-model-len", "256", "--block-size", "16",
                     "--kv-cache-memory", str(46080 * 320), "--max-num-seqs", "16", "--no-enable-prefix-caching")
    prompts = [f"List {k} animals:" for k in range(4)] + ["1, 2, 3, 4,"]
    ref = server.client()

    def ask(client, p, max_tokens=60, **kw):
        r = client.completions.create(model=MODEL_NAME, prompt=p, max_tokens=max_tokens, temperature=0, **kw)
        return r.choices[0].text, r.choices[0].finish_reason

    # The ignore_eos requests run 200 tokens (13 of the pool's 40 blocks each), so any three of the ten that overlap
    # exhaust the pool however fast the device is (on a GPU, 60-token requests finished before enough of them
    # overlapped, and nothing was preempted).
    variants = [dict(max_tokens=200, extra_body={"ignore_eos": True}), dict(stop=["8", " cat"]), dict(logprobs=2)]
    expect = {(p, i): ask(ref, p, **v) for p in prompts for i, v in enumerate(variants)}
    jobs = [(p, i) for p in prompts for i in range(len(variants))] * 2
    with cf.ThreadPoolExecutor(len(jobs)) as ex:
        got = list(ex.map(lambda j: ask(s.client(), j[0], **variants[j[1]]), jobs))
    for j, g in zip(jobs, got):
        assert g == expect[j], (j, g, expect[j])
    assert s.metrics()["osprey_num_preemptions_total"] > 0
    assert _wait_metric(s, "osprey_kv_cache_blocks_used", lambda v: v == 0, timeout=5) == 0

    _disconnect_mid_stream(s, 200)
