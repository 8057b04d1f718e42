"""dataset_tools: answer validation, the stages, the LLM client against a loopback server, kill + resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, write
from fake_openai import FakeOpenAI, good_item_answer

from dataset_tools import pipeline
from dataset_tools.__main__ import main as cli
from dataset_tools.answers import InvalidAnswer, validate_item_answer, validate_user_answer
from dataset_tools.common import PipelineError
from dataset_tools.llm import AnswerCache, ChatClient, LLMSettings
from dataset_tools.providers import LLMProvider, MetadataProvider

GENRES = ["Comedy", "Drama", "Action", "Horror"]


def make_text_dataset(root, name="films", n_users=12, n_items=10, seed=0):
    """NAME.inter (timestamps) and NAME.item (title, year, genres) in root/name."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    rows = [(f"u{u}", f"i{i}", 5, u * 100 + k) for u in range(n_users)
            for k, i in enumerate(rng.choice(n_items, size=min(6, n_items), replace=False))]
    write(os.path.join(folder, f"{name}.inter"), pipeline.INTER_HEADER, rows)
    write(os.path.join(folder, f"{name}.item"), ["item_id:token", "title:token_seq", "year:token", "class:token_seq"],
          [(f"i{i}", f"Film number {i}", 1990 + i, f"{GENRES[i % 4]} {GENRES[(i + 1) % 4]}") for i in range(n_items)])
    return folder


def answer(obj):
    return json.dumps(obj)


# ------------------------------------------------------------------ validation

def test_valid_item_answer_is_normalised_and_repairs_are_counted():
    record, repairs = validate_item_answer("```json\n" + answer({
        "summary": "A gentle comedy about two friends.",
        "tags": {"level1": ["Movies", "movies"], "level2": ["Comedy", "Movies"], "level3": ["Buddy Comedy"]},
        "edges": [["Movies", "Comedy"], ["buddy comedy", "comedy"], ["Comedy", "Space Opera"], ["movies", "comedy"]],
    }) + "\n```")
    assert record["levels"] == [["movies"], ["comedy"], ["buddy comedy"]]
    assert record["edges"] == [["movies", "comedy"], ["comedy", "buddy comedy"]]
    assert len(repairs) == 5  # duplicate in level, tag on two levels, reversed edge, unknown tag, repeated edge


@pytest.mark.parametrize("text, problem", [
    ("", "empty"),
    ("Sure! Here are the tags.", "no JSON"),
    ('{"summary": "A fine item indeed.", "tags": {"level1": ["a"]', "not valid JSON"),
    (answer({"summary": "x y z w", "tags": [["a"], ["b"]], "edges": [["a", "b"]]}), "exactly 3 levels"),
    (answer({"summary": "https://example.org/item", "tags": [["a"], ["b"], ["c"]], "edges": [["a", "b"]]}), "summary"),
    (answer({"summary": "one one one", "tags": [["1"], ["1"], ["1"]], "edges": [["1", "1"]]}), "level 2 is empty"),
    (answer({"summary": "A fine item here.", "tags": [["a"], ["b"], ["c"]], "edges": [["a", "a"], ["x", "y"]]}),
     "no valid edge"),
    (answer({"summary": "A fine item here.", "tags": [["a"], ["b"], ["c"]]}), "missing key 'edges'"),
])
def test_unrepairable_item_answers_are_rejected_with_a_reason(text, problem):
    with pytest.raises(InvalidAnswer, match=problem):
        validate_item_answer(text)


def test_user_answer_needs_a_summary():
    assert validate_user_answer('{"summary": "Likes quiet dramas and old westerns."}')[0]["summary"].startswith("Likes")
    with pytest.raises(InvalidAnswer, match="summary"):
        validate_user_answer('{"text": "hello"}')


def test_merged_vocabulary_keeps_edges_from_broad_to_narrow_only():
    records = {
        "i1": {"levels": [["a"], ["b"], ["c"]], "edges": [["a", "b"], ["b", "c"]]},
        "i2": {"levels": [["a"], ["c"], ["b"]], "edges": [["a", "c"], ["c", "b"]]},
        "i3": {"levels": [["a"], ["b"], ["d"]], "edges": [["a", "b"], ["b", "d"]]},
    }
    tags, level, edges, links, dropped = pipeline.merge_tag_vocabulary(records)
    assert level == {"a": 1, "b": 2, "c": 2, "d": 3}  # c: once on level 2, once on 3 -> the broader
    assert edges == [("a", "b"), ("a", "c"), ("b", "d")] and dropped == 2  # b -> c -> b would be a cycle
    assert all(level[p] < level[c] for p, c in edges)
    assert len(links) == 9


# ------------------------------------------------------------------ stages with the metadata provider

def test_metadata_pipeline_writes_every_file_and_table2(tmp_path):
    folder = make_text_dataset(str(tmp_path))
    assert cli(["split", "films", "--out", str(tmp_path)]) == 0
    assert cli(["items", "films", "--out", str(tmp_path)]) == 0
    assert cli(["users", "films", "--out", str(tmp_path)]) == 0
    assert cli(["write", "films", "--out", str(tmp_path)]) == 0
    counts = pipeline.table2(folder, "films")
    assert counts == {"tags": 1 + 4 + 4, "tag_item": 50, "tag_tag": 4 + 4, "avg_summary_words": counts["avg_summary_words"]}
    items = json.load(open(pipeline.work_file(folder, "items.json")))
    assert items["summary"]["provider"]["provider"] == "metadata"  # says what it is
    assert items["records"]["i3"]["record"]["levels"] == [["item"], ["horror", "comedy"], ["1990s horror", "1990s comedy"]]
    sizes = [sum(1 for _ in open(os.path.join(folder, f"films.{s}.inter"))) - 1 for s in pipeline.SPLITS]
    assert sum(sizes) == 72 and sizes[1] == sizes[2] == 12  # 6 per user -> RecBole's RS sizes 4/1/1


def test_user_summaries_only_see_training_items(tmp_path):
    folder = make_text_dataset(str(tmp_path))
    pipeline.split_dataset(folder, "films", seed=3)
    pipeline.run_items(folder, "films", MetadataProvider("movie"))
    items = json.load(open(pipeline.work_file(folder, "items.json")))["records"]
    summary_of = {json.dumps(v["record"], sort_keys=True): k for k, v in items.items()}
    seen = {}

    class Recording(MetadataProvider):
        def user_record(self, user_id, item_records):
            seen[user_id] = {summary_of[json.dumps(r, sort_keys=True)] for r in item_records}
            return super().user_record(user_id, item_records)

    pipeline.run_users(folder, "films", Recording("movie"))
    held_out = {}
    for split in ("valid", "test"):
        for line in open(os.path.join(folder, f"films.{split}.inter")).read().splitlines()[1:]:
            user, item = line.split("\t")[:2]
            held_out.setdefault(user, set()).add(item)
    assert len(seen) == 12
    for user, items_seen in seen.items():
        assert items_seen and not items_seen & held_out[user]
        assert len(items_seen) == 4


def test_item_without_text_is_an_error_naming_file_and_line(tmp_path, capsys):
    folder = make_text_dataset(str(tmp_path))
    path = os.path.join(folder, "films.item")
    lines = open(path).read().splitlines()
    lines[3] = "i2\t\t\t"
    open(path, "w").write("\n".join(lines) + "\n")
    assert cli(["items", "films", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "films.item" in err and "line 4 (i2)" in err and "no text" in err


def test_users_stage_needs_the_split(tmp_path, capsys):
    make_text_dataset(str(tmp_path))
    assert cli(["items", "films", "--out", str(tmp_path)]) == 0
    assert cli(["users", "films", "--out", str(tmp_path)]) == 1
    assert "films.train.inter not found" in capsys.readouterr().err


# ------------------------------------------------------------------ the LLM client against a loopback server

def client_for(server, tmp_path, **options):
    options = {"retries": 3, "backoff": 0.01, "timeout": 5, **options}
    settings = LLMSettings(base_url=server.url, model="test-model", api_key="sk-secret", **options)
    return ChatClient(settings, AnswerCache(str(tmp_path / "cache.jsonl")))


def test_retries_on_429_and_500_then_succeeds_and_caches(tmp_path):
    failures = iter([(429, "slow down"), (500, "oops")])
    with FakeOpenAI(lambda prompt, body: next(failures, (200, good_item_answer(prompt)))) as server:
        client = client_for(server, tmp_path)
        record, info = LLMProvider(client).item_record("i1", {"title": "Heat"})
        assert record["summary"] == "A well liked item called Heat." and info["status"] == "ok"
        assert client.retried == 2 and sum(server.requests.values()) == 3
        again = LLMProvider(client_for(server, tmp_path)).item_record("i1", {"title": "Heat"})
        assert again[0] == record and sum(server.requests.values()) == 3  # from the cache


def test_invalid_answer_is_reasked_with_the_problem_then_given_up(tmp_path):
    with FakeOpenAI(lambda prompt, body: (200, good_item_answer(prompt)) if "rejected" in prompt
                    else (200, "1")) as server:
        record, info = LLMProvider(client_for(server, tmp_path)).item_record("i1", {"title": "Heat"})
        assert info["status"] == "reasked" and info["asks"] == 2 and record is not None
    with FakeOpenAI(lambda prompt, body: (200, '{"summary": "http://x.y", "tags": [], "edges": []}')) as server:
        record, info = LLMProvider(client_for(server, tmp_path / "b", max_asks=3)).item_record("i1", {"title": "Heat"})
        assert record is None and info["status"] == "failed" and info["asks"] == 3
        assert any("summary" in p for p in info["problems"])


def test_structured_output_falls_back_when_the_server_rejects_it(tmp_path):
    def answer(prompt, body):
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return 400, "response_format json_schema is not supported"
        return 200, good_item_answer(prompt)

    with FakeOpenAI(answer) as server:
        record, _ = LLMProvider(client_for(server, tmp_path)).item_record("i1", {"title": "Heat"})
        assert record is not None and server.formats == ["json_schema", "json_object"]


def test_schema_fallback_is_safe_with_concurrent_requests_and_no_retries(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def answer(prompt, body):
        if (body.get("response_format") or {}).get("type") == "json_schema":
            return 500, "response_format: Input should be 'text' or 'json_object'"
        return 200, good_item_answer(prompt)

    with FakeOpenAI(answer, delay=0.05) as server:
        client = client_for(server, tmp_path, retries=0)
        provider = LLMProvider(client)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda k: provider.item_record(k, {"title": f"Film {k}"}), range(8)))
        assert all(info["status"] == "ok" for _, info in results)
        assert client.mode == "object" and "json_object" in server.formats


def test_a_damaged_cache_line_costs_only_that_answer(tmp_path):
    cache = AnswerCache(str(tmp_path / "c.jsonl"))
    for k in range(3):
        cache.put(f"k{k}", f"answer {k}", {})
    lines = open(tmp_path / "c.jsonl").read().splitlines()
    open(tmp_path / "c.jsonl", "w").write("\n".join([lines[0], "{broken", lines[2]]) + "\n" + lines[1][:10])
    again = AnswerCache(str(tmp_path / "c.jsonl"))
    assert set(again.entries) == {"k0", "k2"}
    assert open(tmp_path / "c.jsonl").read().endswith(lines[2] + "\n")  # the cut last line is removed


def test_wrong_key_and_server_down_are_clear_errors(tmp_path):
    with FakeOpenAI(lambda prompt, body: (200, good_item_answer(prompt)), key="sk-right") as server:
        with pytest.raises(PipelineError, match="rejected the API key"):
            client_for(server, tmp_path).complete([{"role": "user", "content": "hi"}], None, "x")
        url = server.url
    settings = LLMSettings(base_url=url, model="m", api_key="k", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(PipelineError, match="is down or unreachable after 2 tries"):
        ChatClient(settings, AnswerCache(str(tmp_path / "c2.jsonl"))).complete([{"role": "user", "content": "x"}],
                                                                               None, "x")


def test_failed_items_stop_the_stage_unless_filled_from_metadata(tmp_path, capsys):
    make_text_dataset(str(tmp_path))
    with FakeOpenAI(lambda prompt, body: (200, "not json")) as server:
        base = ["items", "films", "--out", str(tmp_path), "--provider", "llm", "--base-url", server.url,
                "--model", "m", "--api-key", "sk-secret", "--max-asks", "2", "--concurrency", "2"]
        assert cli(base) == 1
        err = capsys.readouterr().err
        assert "10 items got no valid answer" in err and "sk-secret" not in err
        assert sum(server.requests.values()) == 20
        assert cli(base + ["--on-failure", "metadata"]) == 0
        assert sum(server.requests.values()) == 20  # every answer came from the cache
    records = json.load(open(pipeline.work_file(os.path.join(str(tmp_path), "films"), "items.json")))["records"]
    assert {r["status"] for r in records.values()} == {"filled from metadata"}


def test_killed_run_resumes_without_losing_or_repeating_a_call(tmp_path):
    make_text_dataset(str(tmp_path), n_items=10)
    cache = tmp_path / "films" / "llm" / "items.cache.jsonl"
    with FakeOpenAI(lambda prompt, body: (200, good_item_answer(prompt)), delay=0.3) as server:
        command = [sys.executable, "-m", "dataset_tools", "items", "films", "--out", str(tmp_path), "--provider",
                   "llm", "--base-url", server.url, "--model", "m", "--concurrency", "1"]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 3):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = len(cache.read_text().splitlines())
        assert 3 <= finished < 10
        assert subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        assert len(server.requests) == 10 and max(server.requests.values()) <= 2
        # a call in flight when killed may be asked again; no finished call is:
        assert sum(server.requests.values()) <= 10 + 1
    assert len(cache.read_text().splitlines()) == 10


def test_openai_embeddings_through_the_same_client_are_cached(tmp_path):
    import openai

    from dataset_tools.encode import VectorCache, encode_texts, load_encoder

    with FakeOpenAI(lambda prompt, body: (200, "")) as server:
        encoder = load_encoder("openai:text-embedding-3-large", openai.OpenAI(base_url=server.url, api_key="k"))
        cache = VectorCache(str(tmp_path / "v.sqlite"))
        first = encode_texts(["ab", "abcd", "ab"], encoder, cache)
        assert first.shape == (3, 3) and first[0, 0] == 2 and first[1, 0] == 4
        assert (encode_texts(["abcd", "ab"], encoder, cache) == first[[1, 0]]).all()
        assert server.requests["embeddings"] == 1


def test_an_encoder_that_cannot_be_loaded_offline_is_a_clear_error(tmp_path):
    from dataset_tools.encode import load_encoder

    with pytest.raises(PipelineError, match="no such local model folder"):
        load_encoder("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(PipelineError, match="openai: encoder needs an endpoint"):
        load_encoder("openai:text-embedding-3-large")


def test_long_histories_are_cut_to_the_most_recent_items_that_fit():
    records = [{"summary": f"item {k} " + "x" * 90, "levels": [["a"], ["b"], ["c"]]} for k in range(10)]
    assert [r["summary"][:6] for r in pipeline.fit_history(records, 3, 10_000)] == ["item 0", "item 1", "item 2"]
    from dataset_tools.prompts import format_item_record

    size = len(format_item_record(records[0])) + 3  # 123 characters with the separator
    assert len(pipeline.fit_history(records, 50, 4 * size)) == 4
    assert len(pipeline.fit_history(records, 50, 4 * size - 1)) == 3
    assert len(pipeline.fit_history(records, 50, 10)) == 1  # never empty


def test_raw_stage_of_the_cli_needs_both_dumps(tmp_path, capsys):
    assert cli(["raw", "Amazon_Toys", "--out", str(tmp_path), "--reviews", str(tmp_path / "r.json.gz")]) == 1
    assert "--meta" in capsys.readouterr().err
    assert cli(["raw", "Amazon_Toys", "--out", str(tmp_path), "--reviews", str(tmp_path / "r.json.gz"),
                "--meta", str(tmp_path / "m.json.gz")]) == 1
    assert "r.json.gz not found" in capsys.readouterr().err
