"""The stages from interactions + item text to HyperLLM's atomic files (paper section 4.1).

Folder ``OUT/NAME/`` (RecBole's layout) holds, stage by stage:

| stage    | reads                         | writes |
|----------|-------------------------------|--------|
| import   | raw dumps / recbole's ml-100k | NAME.inter, NAME.item |
| split    | NAME.inter                    | NAME.train.inter, NAME.valid.inter, NAME.test.inter (8:1:1 per user) |
| items    | NAME.item, NAME.inter         | llm/items.json (+ llm/items.cache.jsonl with every raw LLM answer) |
| users    | NAME.train.inter, llm/items.json | llm/users.json (+ llm/users.cache.jsonl) |
| encode   | llm/items.json, llm/users.json | NAME.itememb, NAME.useremb (+ llm/vectors.sqlite) |
| write    | llm/items.json                | NAME.tag, NAME.tagedge, NAME.itemtag |

User summaries read only ``NAME.train.inter``: no validation or test item can reach
them. Every stage can run alone and rerun: LLM answers and vectors are cached as
they arrive, the other outputs are written under a temporary name and renamed.
items.json and users.json record, per record and in total, how many asks were made and
how many of those were requests sent to the server in that run or answers from the cache.
"""
import json
import os
import random
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from tqdm import tqdm

from dataset_tools.common import (INTER_HEADER, PipelineError, clean_text, file_fingerprint, read_atomic_rows,
                                  replace_when_done, write_atomic_file)

SPLITS = ("train", "valid", "test")
DEFAULT_MAX_USER_ITEMS = 50
DEFAULT_MAX_PROMPT_CHARS = 12000


def dataset_file(folder, name, suffix):
    return os.path.join(folder, f"{name}.{suffix}")


def work_file(folder, name):
    return os.path.join(folder, "llm", name)


def write_json(path, value):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = replace_when_done(path)
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, indent=1)
    os.replace(partial, path)


def read_json(path, made_by):
    if not os.path.isfile(path):
        raise PipelineError(f"{path} not found: run the '{made_by}' stage first")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except ValueError as error:
        raise PipelineError(f"{path} is damaged ({error}); delete it and rerun the '{made_by}' stage "
                            "(LLM answers come back from the cache)") from None


# ---------------------------------------------------------------- import and split

def recbole_ml100k_folder():
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def import_movielens(folder, name="ml-100k", source=None):
    """NAME.inter and NAME.item from RecBole's bundled ml-100k (titles, years, genres); kept if present."""
    source = source or recbole_ml100k_folder()
    targets = {s: dataset_file(folder, name, s) for s in ("inter", "item")}
    if all(os.path.isfile(t) for t in targets.values()):
        return targets
    for suffix, target in targets.items():
        path = os.path.join(source, f"ml-100k.{suffix}")
        names, rows = read_atomic_rows(path)
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split("\t")
        write_atomic_file(target, header, ([row[n] for n in names] for _, row in rows))
    return targets


def read_interactions(path):
    """[(user, item, rating, timestamp, line)] of an .inter file (rating/timestamp may be absent)."""
    names, rows = read_atomic_rows(path)
    for needed in ("user_id", "item_id"):
        if needed not in names:
            raise PipelineError(f"{path}, line 1: no {needed} column (found {names})")
    result = []
    for line_no, row in rows:
        result.append((row["user_id"], row["item_id"], row.get("rating", "1"), row.get("timestamp", str(line_no)),
                       line_no))
    if not result:
        raise PipelineError(f"{path}: no interactions")
    return result


def split_counts(n, ratios):
    """Sizes of train/valid/test for one user's n interactions, as RecBole's RS split computes them
    (recbole.data.dataset.Dataset._calcu_split_ids): floor each share, give the rest to train, and
    move one interaction from train to any split whose share is between 0 and 1."""
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def split_dataset(folder, name, ratios=(0.8, 0.1, 0.1), seed=2020):
    """Random 8:1:1 split per user into RecBole benchmark files; unchanged files are kept."""
    record_path = work_file(folder, "split.json")
    inter_path = dataset_file(folder, name, "inter")
    setting = {"ratios": list(ratios), "seed": seed,
               "source_sha256": file_fingerprint(inter_path) if os.path.isfile(inter_path) else None}
    outputs = [dataset_file(folder, name, f"{s}.inter") for s in SPLITS]
    if os.path.isfile(record_path) and all(os.path.isfile(p) for p in outputs):
        with open(record_path, encoding="utf-8") as handle:
            if json.load(handle) == setting:
                return outputs
    by_user = defaultdict(list)
    for user, item, rating, stamp, _ in read_interactions(inter_path):
        by_user[user].append((user, item, rating, stamp))
    rng = random.Random(seed)
    parts = ([], [], [])
    for user in sorted(by_user):
        rows = by_user[user]
        rng.shuffle(rows)
        start = 0
        for part, count in zip(parts, split_counts(len(rows), ratios)):
            part.extend(rows[start:start + count])
            start += count
    for path, part in zip(outputs, parts):
        write_atomic_file(path, INTER_HEADER, part)
    write_json(record_path, setting)
    return outputs


# ---------------------------------------------------------------- items

def load_item_fields(folder, name):
    """{item: {field: text}} for every item of NAME.inter; an item without any text is an error."""
    item_path = dataset_file(folder, name, "item")
    names, rows = read_atomic_rows(item_path)
    if "item_id" not in names:
        raise PipelineError(f"{item_path}, line 1: no item_id column (found {names})")
    fields, lines = {}, {}
    for line_no, row in rows:
        item = row.pop("item_id")
        fields[item] = {k: clean_text(v) for k, v in row.items() if clean_text(v)}
        lines[item] = line_no
    used = dict.fromkeys(i for _, i, *_ in read_interactions(dataset_file(folder, name, "inter")))
    absent = [i for i in used if i not in fields]
    if absent:
        raise PipelineError(f"{item_path}: {len(absent)} items of {name}.inter have no row, e.g. {absent[:5]}; "
                            "add them or drop their interactions")
    textless = [i for i in used if not fields[i]]
    if textless:
        examples = ", ".join(f"line {lines[i]} ({i})" for i in textless[:5])
        raise PipelineError(f"{item_path}: {len(textless)} items have no text at all, e.g. {examples}; give them a "
                            "title or description, or drop them (dataset_tools.amazon drops them unless "
                            "--keep-textless)")
    return {i: fields[i] for i in used}


def run_jobs(jobs, work, concurrency, desc):
    """{key: (record, info)} for ``work(*job)``, at most ``concurrency`` at once, with a tqdm bar."""
    results, counts, tokens = {}, Counter(), Counter()
    lock = threading.Lock()
    with tqdm(total=len(jobs), desc=desc, unit=desc.split()[0]) as bar, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(work, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                record, info = future.result()
                with lock:
                    results[futures[future]] = (record, info)
                    counts[info["status"]] += 1
                    tokens.update(info.get("usage", {}))
                    bar.set_postfix(failed=counts["failed"], reasked=counts["reasked"],
                                    repaired=counts["repaired"], tokens=tokens.get("total_tokens", 0),
                                    refresh=False)
                    bar.update(1)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results, dict(counts), dict(tokens)


def ask_totals(results):
    """{total, requests_sent, from_cache} over the records' asks in this run: how many asks were new requests to
    the LLM server and how many answers were served from the answer cache."""
    totals = Counter()
    for _, info in results.values():
        totals.update({"total": info.get("asks", 0), "requests_sent": info.get("requests_sent", 0),
                       "from_cache": info.get("from_cache", 0)})
    return {key: totals[key] for key in ("total", "requests_sent", "from_cache")}


def fill_failures(results, fallback, kind, path, on_failure):
    """Items/users without a valid answer: stop (default) or take the metadata provider's record."""
    failed = sorted(k for k, (record, _) in results.items() if record is None)
    if not failed:
        return results
    if on_failure != "metadata" or fallback is None:
        asks = max(results[k][1].get("asks", 0) for k in failed)
        more = (f"Rerun with --max-asks above {asks} to send new asks (the first {asks} come from the cache)"
                if asks else "Fix their text")
        raise PipelineError(f"{len(failed)} {kind}s got no valid answer (e.g. {failed[:5]}; problems are listed in "
                            f"{path}); every finished answer is cached. {more}, or --on-failure metadata to fill "
                            "them from the items' own fields")
    for key in failed:
        record, info = fallback(key)
        if record is None:
            raise PipelineError(f"{kind} {key!r}: no valid answer and its own fields give no valid record either "
                                f"({info.get('problems')}); fix its text or drop it")
        results[key] = (record, {**results[key][1], "status": "filled from metadata", "fallback": info})
    return results


def save_records(path, summary, results, kind, fallback, on_failure):
    """Fill or refuse failed records (``fill_failures``), and write {summary, records} to ``path`` either way,
    so a stage that stops still leaves every answer and problem it has."""
    try:
        fill_failures(results, fallback, kind, path, on_failure)
    finally:
        write_json(path, {"summary": summary,
                          "records": {k: {"record": r, **i} for k, (r, i) in sorted(results.items())}})


def run_items(folder, name, provider, concurrency=1, on_failure="fail", fallback_provider=None):
    """Item records (summary, 3 tag levels, edges) for every item; returns the stage summary."""
    fields = load_item_fields(folder, name)
    jobs = {item: (item, f) for item, f in fields.items()}
    results, counts, tokens = run_jobs(jobs, provider.item_record, concurrency, "items")
    out_path = work_file(folder, "items.json")
    summary = {"provider": provider.describe(), "items": len(jobs), "status": counts, "asks": ask_totals(results),
               "tokens": tokens}
    fallback = (lambda item: fallback_provider.item_record(item, fields[item])) if fallback_provider else None
    save_records(out_path, summary, results, "item", fallback, on_failure)
    return summary


def users_split_fingerprint(folder):
    """sha256 of the training file the user summaries were built from (None without pipeline users)."""
    path = work_file(folder, "users.json")
    if not os.path.isfile(path):
        return None
    return read_json(path, "users")["summary"].get("history", {}).get("train_sha256")


def embedded_split_fingerprint(folder):
    """sha256 of the training file behind the user summaries that NAME.useremb encodes (None if unknown)."""
    path = work_file(folder, "encoded.json")
    if not os.path.isfile(path):
        return None
    return read_json(path, "encode").get("users_train_sha256")


def training_histories(folder, name):
    """{user: [items, most recent first]} from NAME.train.inter only (never valid/test)."""
    path = dataset_file(folder, name, "train.inter")
    if not os.path.isfile(path):
        raise PipelineError(f"{path} not found: user summaries read the training split only; run the 'split' "
                            "stage first (or give the benchmark files of your own split)")
    histories = defaultdict(list)
    for user, item, _, stamp, line in read_interactions(path):
        try:
            histories[user].append((float(stamp) if stamp else 0.0, line, item))
        except ValueError:
            raise PipelineError(f"{path}, line {line}: timestamp {stamp!r} is not a number") from None
    return {u: [item for _, _, item in sorted(rows, reverse=True)] for u, rows in histories.items()}


def fit_history(records, max_items, max_chars):
    """The most recent records that fit: at most ``max_items`` and ``max_chars`` of prompt text."""
    from dataset_tools.prompts import format_item_record

    kept, used = [], 0
    for record in records[:max_items]:
        size = len(format_item_record(record)) + 3
        if kept and used + size > max_chars:
            break
        kept.append(record)
        used += size
    return kept


def run_users(folder, name, provider, concurrency=1, max_items=DEFAULT_MAX_USER_ITEMS,
              max_chars=DEFAULT_MAX_PROMPT_CHARS, on_failure="fail", fallback_provider=None):
    """User summaries from the records of each user's training items (most recent first, cut to fit)."""
    items = read_json(work_file(folder, "items.json"), "items")["records"]
    histories = training_histories(folder, name)
    jobs = {}
    for user, history in histories.items():
        records = [items[i]["record"] for i in history if i in items and items[i]["record"] is not None]
        if not records:
            raise PipelineError(f"user {user!r} has no training item with a record in "
                                f"{work_file(folder, 'items.json')}; rerun the 'items' stage")
        jobs[user] = (user, fit_history(records, max_items, max_chars))
    results, counts, tokens = run_jobs(jobs, provider.user_record, concurrency, "users")
    out_path = work_file(folder, "users.json")
    summary = {"provider": provider.describe(), "users": len(jobs), "status": counts, "asks": ask_totals(results),
               "tokens": tokens,
               "history": {"source": f"{name}.train.inter", "max_items": max_items, "max_chars": max_chars,
                           "train_sha256": file_fingerprint(dataset_file(folder, name, "train.inter"))}}
    fallback = (lambda user: fallback_provider.user_record(user, jobs[user][1])) if fallback_provider else None
    save_records(out_path, summary, results, "user", fallback, on_failure)
    return summary


# ---------------------------------------------------------------- encode and write

def run_encode(folder, name, encoder):
    """NAME.itememb and NAME.useremb from the item and user summaries."""
    from dataset_tools.encode import VectorCache, encode_texts

    cache = VectorCache(work_file(folder, "vectors.sqlite"))
    written = {}
    for kind in ("item", "user"):
        records = read_json(work_file(folder, f"{kind}s.json"), f"{kind}s")["records"]
        keys = sorted(k for k, v in records.items() if v["record"] is not None)
        vectors = encode_texts([records[k]["record"]["summary"] for k in keys], encoder, cache, desc=f"encode {kind}s")
        rows = ((k, " ".join(f"{x:.6g}" for x in v)) for k, v in zip(keys, vectors))
        write_atomic_file(dataset_file(folder, name, f"{kind}emb"), [f"{kind}_id:token", f"{kind}_emb:float_seq"], rows)
        written[kind] = {"rows": len(keys), "dim": int(vectors.shape[1]) if len(keys) else 0}
    summary = {"encoder": encoder.name, **written, "users_train_sha256": users_split_fingerprint(folder)}
    write_json(work_file(folder, "encoded.json"), summary)  # written last: what NAME.useremb was made from
    return summary


def merge_tag_vocabulary(records):
    """One vocabulary over all items: level = the tag's most frequent level (ties: the broader);
    edges kept only from a broader to a narrower merged level, so the merged graph has no cycle."""
    level_votes = defaultdict(Counter)
    links, edges = set(), Counter()
    for item, record in records.items():
        for depth, level in enumerate(record["levels"], start=1):
            for tag in level:
                level_votes[tag][depth] += 1
                links.add((item, tag))
        edges.update((p, c) for p, c in record["edges"])
    level = {t: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, v in level_votes.items()}
    kept = sorted(e for e in edges if level[e[0]] < level[e[1]])
    dropped = len(edges) - len(kept)
    tags = sorted(level, key=lambda t: (level[t], t))
    return tags, level, kept, sorted(links), dropped


def run_write(folder, name):
    """NAME.tag, NAME.tagedge, NAME.itemtag from the item records; returns the paper's Table 2 counts."""
    items = read_json(work_file(folder, "items.json"), "items")["records"]
    records = {k: v["record"] for k, v in items.items() if v["record"] is not None}
    tags, level, edges, links, dropped = merge_tag_vocabulary(records)
    token = {t: f"t{i + 1}" for i, t in enumerate(tags)}
    write_atomic_file(dataset_file(folder, name, "tag"), ["tag_id:token", "tag_name:token", "tag_level:float"],
                      ((token[t], t, level[t]) for t in tags))
    write_atomic_file(dataset_file(folder, name, "tagedge"), ["parent_tag_id:token", "child_tag_id:token"],
                      ((token[p], token[c]) for p, c in edges))
    write_atomic_file(dataset_file(folder, name, "itemtag"), ["item_id:token", "tag_id:token"],
                      ((i, token[t]) for i, t in links))
    return {"tags": len(tags), "tag_item": len(links), "tag_tag": len(edges),
            "edges_dropped_against_levels": dropped, "tags_per_level": dict(Counter(level.values()))}


def table2(folder, name):
    """Paper's Table 2: tags, tag-item links, tag-tag edges, average summary length (whitespace words)."""
    counts = {}
    for suffix in ("tag", "itemtag", "tagedge"):
        with open(dataset_file(folder, name, suffix), encoding="utf-8") as handle:
            counts[suffix] = sum(1 for _ in handle) - 1
    words = []
    for kind in ("items", "users"):
        path = work_file(folder, f"{kind}.json")
        if os.path.isfile(path):
            records = read_json(path, kind)["records"]
            words += [len(v["record"]["summary"].split()) for v in records.values() if v["record"]]
    return {"tags": counts["tag"], "tag_item": counts["itemtag"], "tag_tag": counts["tagedge"],
            "avg_summary_words": round(float(np.mean(words)), 1) if words else 0.0}

