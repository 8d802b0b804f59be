"""Fixtures for the `osprey serve` tests: a real server process on a free loopback port, talking to the official
`openai` client. The binary comes from $OSPREY_BINARY (default build/osprey); the model is SmolLM2-135M-Instruct
Q4_1 from $OSPREY_MODEL_CACHE (default ~/.cache/osprey/models). Tests skip when either is missing."""
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def binary_path():
    return pathlib.Path(os.environ.get("OSPREY_BINARY", REPO / "build" / "osprey"))


def model_path():
    cache = os.environ.get("OSPREY_MODEL_CACHE", os.path.expanduser("~/.cache/osprey/models"))
    return pathlib.Path(cache) / MODEL_NAME


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `osprey serve` process."""

    def __init__(self, args, api_key=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log = tempfile.NamedTemporaryFile(prefix="osprey-serve-", suffix=".log", delete=False)
        cmd = [str(binary_path()), "serve", "-m", str(model_path()), "--port", str(self.port)] + list(args)
        if api_key:
            cmd += ["--api-key", api_key]
        # Extra flags for every server of the run, e.g. OSPREY_SERVE_ARGS="--device cuda" on a GPU machine.
        cmd += os.environ.get("OSPREY_SERVE_ARGS", "").split()
        if "--threads" not in args:
            # One model thread by default: the machine is shared, and a spinning pool oversubscribed collapses.
            cmd += ["--threads", os.environ.get("OSPREY_SERVE_THREADS", "1")]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"osprey serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("osprey serve did not become healthy:\n" + self.log_text())

    def log_text(self):
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def client(self, **kw):
        import openai

        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.api_key or "none", max_retries=0, **kw)

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def remove_log(self):
        """Deletes the server's log (OSPREY_KEEP_SERVER_LOGS=1 keeps it, for a look after the run)."""
        self.log.close()
        if os.environ.get("OSPREY_KEEP_SERVER_LOGS") != "1":
            pathlib.Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def osprey_binary():
    b = binary_path()
    if not b.exists():
        pytest.skip(f"osprey binary not found at {b} (set OSPREY_BINARY)")
    if not model_path().exists():
        pytest.skip(f"model not found: {model_path()} (scripts/fetch_models.sh)")
    return b


@pytest.fixture(scope="session")
def start_server(osprey_binary):
    servers = []

    def start(*args, api_key=None):
        s = Server(args, api_key=api_key)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
        s.remove_log()


@pytest.fixture(scope="session")
def server(start_server):
    return start_server("--max-model-len", "1024", "--max-num-seqs", "64", "--http-threads", "2")
