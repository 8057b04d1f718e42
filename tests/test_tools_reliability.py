"""dataset_tools under failure: re-asks that reach the LLM, bad release files, a server that is down.

No network: the ``openai`` client talks to an in-process ``httpx2.MockTransport`` that counts requests.
"""
import functools
import json
import os
import re

import httpx2
import numpy as np
import openai
import pytest
import scipy.sparse as sp
import torch

from dataset_tools import pipeline
from dataset_tools.__main__ import main as cli
from dataset_tools.common import PipelineError, write_atomic_file
from dataset_tools.encode import load_encoder
from dataset_tools.from_official import main as from_official
from dataset_tools.llm import AnswerCache, ChatClient, LLMSettings
from dataset_tools.providers import LLMProvider

URL = "http://llm.test/v1"
REAL_OPENAI = openai.OpenAI  # a test may patch openai.OpenAI to build clients through FakeServer


class FakeServer:
    """An OpenAI-compatible chat endpoint in-process: ``answer(prompt) -> (status, text)``, or an exception to
    raise as the transport's error (e.g. a refused connection). ``prompts`` holds every request received."""

    def __init__(self, answer):
        self.answer = answer
        self.prompts = []

    def handle(self, request):
        body = json.loads(request.content)
        self.prompts.append(body["messages"][-1]["content"] if "messages" in body else "embeddings")
        result = self.answer(self.prompts[-1])
        if isinstance(result, Exception):
            raise result
        status, text = result
        if status != 200:
            return httpx2.Response(status, json={"error": {"message": text}})
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    def openai_client(self, **options):
        """A real ``openai.OpenAI`` whose HTTP goes to this fake server."""
        options.pop("http_client", None)
        options["base_url"] = URL
        return REAL_OPENAI(http_client=httpx2.Client(transport=httpx2.MockTransport(self.handle)), **options)


def chat_client(server, cache_path, **options):
    settings = LLMSettings(base_url=URL, model="m", api_key="k", **{"retries": 0, "backoff": 0.01, **options})
    client = ChatClient(settings, AnswerCache(str(cache_path)))
    client.client = server.openai_client(api_key="k", max_retries=0)
    return client


# ------------------------------------------------------------------ 1. every ask is a real request

def test_each_ask_is_a_new_request_and_the_record_says_which_came_from_the_cache(tmp_path):
    server = FakeServer(lambda prompt: (200, "not json"))
    cache = tmp_path / "items.cache.jsonl"
    record, info = LLMProvider(chat_client(server, cache, max_asks=5)).item_record("i1", {"title": "Heat"})
    assert record is None and info["status"] == "failed"
    assert len(server.prompts) == 5 and len(set(server.prompts)) == 5  # 5 asks, 5 distinct requests
    assert (info["asks"], info["requests_sent"], info["from_cache"]) == (5, 5, 0)
    assert "Your previous 4 answers were rejected" in server.prompts[-1] and "no JSON" in server.prompts[-1]

    _, again = LLMProvider(chat_client(server, cache, max_asks=5)).item_record("i1", {"title": "Heat"})
    assert len(server.prompts) == 5 and (again["asks"], again["requests_sent"], again["from_cache"]) == (5, 0, 5)

    _, more = LLMProvider(chat_client(server, cache, max_asks=7)).item_record("i1", {"title": "Heat"})
    assert len(server.prompts) == 7 and (more["asks"], more["requests_sent"], more["from_cache"]) == (7, 2, 5)


def make_items(root, name="films", n_items=3):
    """NAME.inter and NAME.item of a few films in root/name."""
    folder = os.path.join(root, name)
    write_atomic_file(os.path.join(folder, f"{name}.inter"), pipeline.INTER_HEADER,
                      [(f"u{u}", f"i{i}", 5, u * 10 + i) for u in range(2) for i in range(n_items)])
    write_atomic_file(os.path.join(folder, f"{name}.item"), ["item_id:token", "title:token_seq"],
                      [(f"i{i}", f"Film number {i}") for i in range(n_items)])
    return folder


def test_rerun_with_more_asks_sends_new_requests_and_items_json_tells_the_truth(tmp_path, monkeypatch, capsys):
    server = FakeServer(lambda prompt: (200, '{"summary": "too short"}'))
    monkeypatch.setattr(openai, "OpenAI", functools.partial(server.openai_client))
    folder = make_items(str(tmp_path))
    base = ["items", "films", "--out", str(tmp_path), "--provider", "llm", "--base-url", URL, "--model", "m",
            "--concurrency", "1"]
    assert cli(base + ["--max-asks", "3"]) == 1
    err = capsys.readouterr().err
    assert "3 items got no valid answer" in err
    assert "Rerun with --max-asks above 3 to send new asks (the first 3 come from the cache)" in err
    assert len(server.prompts) == 9
    saved = json.load(open(pipeline.work_file(folder, "items.json")))
    assert saved["summary"]["asks"] == {"total": 9, "requests_sent": 9, "from_cache": 0}
    assert {(r["asks"], r["requests_sent"], r["from_cache"]) for r in saved["records"].values()} == {(3, 3, 0)}

    assert cli(base + ["--max-asks", "5"]) == 1  # the advice works: 2 new asks per item reach the server
    assert len(server.prompts) == 15
    saved = json.load(open(pipeline.work_file(folder, "items.json")))
    assert saved["summary"]["asks"] == {"total": 15, "requests_sent": 6, "from_cache": 9}


# ------------------------------------------------------------------ 2. bad release files

def tiny_release(root, n_users=4, n_items=5):
    """The authors' layout, tiny: three CSR matrices, the tag JSON files and a phase-1 output."""
    src, phase1 = os.path.join(root, "release", "beauty"), os.path.join(root, "release", "phase1")
    os.makedirs(src), os.makedirs(phase1)
    for k, name in enumerate(("train_matrix", "val_matrix", "test_matrix")):
        dense = np.zeros((n_users, n_items), dtype=np.float32)
        dense[np.arange(n_users), (np.arange(n_users) + k) % n_items] = 1
        sp.save_npz(os.path.join(src, f"{name}.npz"), sp.csr_matrix(dense))
    files = {"id_to_tag": {"0": "a", "1": "b", "2": "c"}, "tag_to_tag": {"0": [1], "1": [2]},
             "tag_to_item": {"0": [0, 1], "1": [2], "2": [3, 4]}}
    for name, content in files.items():
        with open(os.path.join(src, f"{name}.json"), "w") as handle:
            json.dump(content, handle)
    torch.save(torch.randn(n_users, 2), os.path.join(phase1, "beauty_user_1.pt"))
    torch.save(torch.randn(n_items, 2), os.path.join(phase1, "beauty_item_1.pt"))
    return src, phase1


def damage(path, how):
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2] if how == "truncate" else b"\x00garbage\xff")


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("filename, how, expected", [
    ("train_matrix.npz", "truncate", "not a readable sparse matrix (BadZipFile: File is not a zip file); expected "
                                     "the users x items CSR matrix written by scipy.sparse.save_npz"),
    ("val_matrix.npz", "garbage", "not a readable sparse matrix"),
    ("tag_to_tag.json", '{"0": [1],', "line 1: not valid JSON (Expecting property name enclosed in double quotes); "
                                      "expected a JSON object of tag id -> list of child tag ids"),
    ("id_to_tag.json", "[1, 2]", "holds a JSON list; expected a JSON object of tag id -> tag name"),
    ("tag_to_item.json", '{"0": ["x"]}', "'x' is not an integer id >= 0; expected a JSON object of tag id -> "
                                         "list of item ids"),
])
def test_a_bad_release_file_is_one_line_naming_it_and_leaves_no_output(tmp_path, capsys, filename, how, expected):
    src, _ = tiny_release(str(tmp_path))
    path = os.path.join(src, filename)
    if filename.endswith(".npz"):
        damage(path, how)
    else:
        open(path, "w").write(how)
    out = tmp_path / "data"
    assert from_official([src, str(out), "--dataset", "fake"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {path}") and expected in line
    assert not out.exists()  # neither OUT/fake nor a partial folder (nor OUT, which this run created)


@pytest.mark.parametrize("content, expected", [
    (b"\x00garbage\xff", "not a readable PyTorch tensor file (UnpicklingError: Weights only load failed"),
    ("dict", "holds a dict, not a tensor; expected a (4, d) float tensor saved with torch.save"),
])
def test_a_bad_phase1_file_keeps_the_earlier_complete_output(tmp_path, capsys, content, expected):
    src, phase1 = tiny_release(str(tmp_path))
    out = tmp_path / "data"
    assert from_official([src, str(out), "--dataset", "fake"]) == 0
    (out / "fake" / "notes.txt").write_text("the user's own file")
    before = {p.name: p.read_bytes() for p in (out / "fake").iterdir()}
    capsys.readouterr()

    bad = os.path.join(phase1, "beauty_user_1.pt")
    good = open(bad, "rb").read()
    if content == "dict":
        torch.save({"weights": torch.zeros(4, 2)}, bad)
    else:
        open(bad, "wb").write(content)
    assert from_official([src, str(out), "--dataset", "fake", "--phase1", phase1]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {bad}: ") and expected in line
    assert sorted(os.listdir(out)) == ["fake"]  # no partial folder left
    assert {p.name: p.read_bytes() for p in (out / "fake").iterdir()} == before

    open(bad, "wb").write(good)  # fixed: the rerun replaces the output, keeping the user's own file
    assert from_official([src, str(out), "--dataset", "fake", "--phase1", phase1]) == 0
    assert sorted(os.listdir(out)) == ["fake"]
    assert (out / "fake" / "fake.userinit").is_file() and (out / "fake" / "notes.txt").read_text() == \
        "the user's own file"


# ------------------------------------------------------------------ 3. a server that is down says so

def no_sleep(monkeypatch):
    waits = []
    monkeypatch.setattr("dataset_tools.llm.time.sleep", waits.append)
    return waits


RETRY_LINE = re.compile(r"^(.*?): try (\d) of (\d) failed \((.*)\); waiting (\d+\.\d) s before try (\d)$")


def retry_lines(err):
    return [RETRY_LINE.match(line).groups() for line in err.splitlines() if RETRY_LINE.match(line)]


def test_every_retry_of_a_down_server_prints_one_line(tmp_path, monkeypatch, capsys):
    waits = no_sleep(monkeypatch)
    server = FakeServer(lambda prompt: httpx2.ConnectError("[Errno 111] Connection refused"))
    client = chat_client(server, tmp_path / "c.jsonl", retries=3, backoff=1.0)
    with pytest.raises(PipelineError, match=f"LLM server {URL} is down or unreachable after 4 tries"):
        client.complete([{"role": "user", "content": "x"}], None, "x")
    lines = retry_lines(capsys.readouterr().err)
    assert [(where, k, n, after) for where, k, n, _, _, after in lines] == \
        [(f"LLM server {URL}", str(k), "4", str(k + 1)) for k in (1, 2, 3)]
    assert all(error == "APIConnectionError: Connection error. ([Errno 111] Connection refused)"
               for _, _, _, error, _, _ in lines)
    assert [float(wait) for *_, wait, _ in lines] == [round(w, 1) for w in waits] and len(waits) == 3
    assert len(server.prompts) == 4


def test_retries_on_server_errors_and_embeddings_are_announced_too(tmp_path, monkeypatch, capsys):
    no_sleep(monkeypatch)
    answers = iter([(503, "loading model"), (200, '{"summary": "a"}')])
    server = FakeServer(lambda prompt: next(answers))
    text, _, _ = chat_client(server, tmp_path / "c.jsonl", retries=2).complete(
        [{"role": "user", "content": "x"}], None, "x")
    assert text == '{"summary": "a"}'
    assert [line[3] for line in retry_lines(capsys.readouterr().err)] == ["503 loading model"]

    down = FakeServer(lambda prompt: httpx2.ConnectError("[Errno 111] Connection refused"))
    encoder = load_encoder("openai:emb", down.openai_client(api_key="k", max_retries=0), retries=2)
    with pytest.raises(PipelineError, match="embedding call to model 'emb' failed: APIConnectionError"):
        encoder(["some text"])
    lines = retry_lines(capsys.readouterr().err)
    assert [(where, k, n) for where, k, n, *_ in lines] == [(f"embedding server {URL}/", "1", "3"),
                                                           (f"embedding server {URL}/", "2", "3")]
    assert len(down.prompts) == 3
