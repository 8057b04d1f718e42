"""Convert Amazon review dumps (2014, 2018 or 2023 layout) into RecBole atomic files.

    python -m dataset_tools.amazon reviews_Toys_and_Games_5.json.gz meta_Toys_and_Games.json.gz dataset --dataset Amazon_Toys

OUT/NAME/ receives NAME.inter (user, item, rating, timestamp in seconds) and
NAME.item (title, brand, categories, description, price) for the items kept by
the rating filter and the iterative k-core, plus NAME.raw.json (input
fingerprints and stats) so that a second run with the same inputs is skipped.
"""
import argparse
import ast
import gzip
import html
import io
import json
import math
import os
import re
import sys
import zlib
from collections import Counter

from tqdm import tqdm

from dataset_tools.common import (INTER_HEADER, PipelineError, clean_text, file_fingerprint, read_atomic_rows,
                                  write_atomic_file)

ITEM_HEADER = ["item_id:token", "title:token_seq", "brand:token", "categories:token_seq",
               "description:token_seq", "price:float"]
EXPECTED_FILES = ("an Amazon review dump such as reviews_Toys_and_Games_5.json.gz, or its metadata "
                  "such as meta_Toys_and_Games.json.gz (.json, .jsonl, .json.gz or .jsonl.gz)")
REVIEW_KEYS = ("reviewerID, asin, overall, unixReviewTime (2014/2018) or "
               "user_id, parent_asin or asin, rating, timestamp (2023)")
_TAG = re.compile(r"<[^>]*>")
_PRICE = re.compile(r"^\$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)$")


def _parse_line(path, line_no, line):
    try:
        record = json.loads(line)
    except ValueError:
        try:  # the 2014 meta_*.json.gz files hold Python dict literals
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
            raise PipelineError(f"{path}, line {line_no}: neither JSON nor a Python dict literal "
                                f"({type(error).__name__}: {error})") from None
    if not isinstance(record, dict):
        raise PipelineError(f"{path}, line {line_no}: expected one JSON object per line, got {type(record).__name__}")
    return record


def iter_json_lines(path, progress=False):
    """Iterator of (line number, dict) of a JSON-lines file, gzipped or not; blank lines are skipped."""
    if not os.path.isfile(path):  # checked now, not at the first next()
        raise PipelineError(f"{path} not found: expected {EXPECTED_FILES}")
    return _json_lines(path, progress)


def _json_lines(path, progress):
    raw = open(path, "rb")
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw
    text = io.TextIOWrapper(stream, encoding="utf-8")
    bar = tqdm(total=os.path.getsize(path), unit="B", unit_scale=True,
               desc=os.path.basename(path), disable=not progress)
    line_no, shown = 0, 0
    try:
        while True:
            try:
                line = text.readline()
            except (EOFError, zlib.error, OSError) as error:  # gzip.BadGzipFile is an OSError
                raise PipelineError(f"{path}: truncated or corrupt file after line {line_no} "
                                    f"({type(error).__name__}: {error}); re-download it") from None
            except UnicodeDecodeError as error:
                raise PipelineError(f"{path}: not UTF-8 text after line {line_no} ({error}); "
                                    "re-download it") from None
            if not line:
                break
            line_no += 1
            if line_no % 10000 == 0:
                position = raw.tell()
                bar.update(position - shown)
                shown = position
            if not line.strip():
                continue
            yield line_no, _parse_line(path, line_no, line)
        bar.update(os.path.getsize(path) - shown)
    finally:
        bar.close()
        text.close()
        raw.close()


def read_reviews(path, progress=False):
    """Iterator of (user, item, rating, timestamp in seconds) from a 2014, 2018 or 2023 review dump."""
    return _reviews(path, iter_json_lines(path, progress))


def _reviews(path, lines):
    for line_no, record in lines:
        try:
            if "reviewerID" in record and "asin" in record and "overall" in record and "unixReviewTime" in record:
                user, item = record["reviewerID"], record["asin"]
                rating, timestamp = float(record["overall"]), float(record["unixReviewTime"])
            elif ("user_id" in record and ("parent_asin" in record or "asin" in record)
                  and "rating" in record and "timestamp" in record):
                user, item = record["user_id"], record.get("parent_asin") or record.get("asin")
                rating, timestamp = float(record["rating"]), float(record["timestamp"]) / 1000.0
            else:
                raise PipelineError(f"{path}, line {line_no}: keys {sorted(record)[:12]}; "
                                    f"expected {REVIEW_KEYS}")
        except (TypeError, ValueError) as error:
            raise PipelineError(f"{path}, line {line_no}: bad rating or timestamp ({error})") from None
        user, item = clean_text(user), clean_text(item)
        if not user or not item:
            raise PipelineError(f"{path}, line {line_no}: empty user or item id")
        yield user, item, rating, timestamp


def _text(value):
    """One clean line from a string or a list of strings, HTML tags and entities removed."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return clean_text(" ".join(_text(part) for part in value))
    return clean_text(html.unescape(_TAG.sub(" ", str(value))))


def _price(value):
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _PRICE.match(_text(value))
        if not match:
            return ""
        number = float(match.group(1).replace(",", ""))
    return repr(number) if math.isfinite(number) and number >= 0 else ""


def _categories(paths):
    """' > ' within a path, ' | ' between paths; empty names and duplicate paths dropped."""
    seen, out = set(), []
    for path in paths:
        names = tuple(name for name in (_text(part) for part in path) if name)
        if names and names not in seen:
            seen.add(names)
            out.append(" > ".join(names))
    return " | ".join(out)


def read_meta(path, progress=False):
    """Map item -> dict(title, brand, categories, description, price) of cleaned strings; first line per item wins."""
    meta = {}
    for line_no, record in iter_json_lines(path, progress):
        item = clean_text(record.get("parent_asin") or record.get("asin"))
        if not item:
            raise PipelineError(f"{path}, line {line_no}: no 'asin' (2014/2018) or 'parent_asin' (2023) key")
        if item in meta:
            continue
        paths = []
        cats = record.get("categories", record.get("category"))
        if isinstance(cats, list) and cats:
            paths.extend(cats if all(isinstance(c, (list, tuple)) for c in cats) else [cats])
        main = _text(record.get("main_category") or record.get("main_cat"))
        if main and not any(main == _text(name) for p in paths for name in p):
            paths.insert(0, [main])
        details = record.get("details") if isinstance(record.get("details"), dict) else {}
        brand = record.get("brand") or details.get("Brand") or details.get("Manufacturer") or record.get("store")
        description = record.get("description")
        if "features" in record:
            description = [description, record.get("features")]
        meta[item] = {
            "title": _text(record.get("title")),
            "brand": _text(brand),
            "categories": _categories(paths),
            "description": _text(description),
            "price": _price(record.get("price")),
        }
    return meta


def filter_interactions(reviews, min_rating=4.0, k=5):
    """Ratings >= min_rating, latest of duplicate (user, item) pairs, then the iterative k-core; sorted by (user, time)."""
    latest = {}
    for user, item, rating, timestamp in reviews:
        if rating < min_rating:
            continue
        old = latest.get((user, item))
        if old is None or timestamp >= old[3]:
            latest[(user, item)] = (user, item, rating, timestamp)
    rows = list(latest.values())
    while True:
        users = Counter(row[0] for row in rows)
        items = Counter(row[1] for row in rows)
        kept = [row for row in rows if users[row[0]] >= k and items[row[1]] >= k]
        if len(kept) == len(rows):
            break
        rows = kept
    return sorted(rows, key=lambda row: (row[0], row[3], row[1]))


def _inputs_record(reviews_path, meta_path, min_rating, k, require_text):
    for path in (reviews_path, meta_path):
        if not os.path.isfile(path):
            raise PipelineError(f"{path} not found: expected {EXPECTED_FILES}")
    return {"reviews_sha256": file_fingerprint(reviews_path), "meta_sha256": file_fingerprint(meta_path),
            "min_rating": float(min_rating), "k": int(k), "require_text": bool(require_text)}


def convert_amazon(reviews_path, meta_path, out_root, name, min_rating=4.0, k=5, require_text=True, progress=True):
    """Write out_root/name/name.{inter,item} and return the stats; skipped when name.raw.json matches the inputs."""
    folder = os.path.join(out_root, name)
    inter_path = os.path.join(folder, f"{name}.inter")
    item_path = os.path.join(folder, f"{name}.item")
    record_path = os.path.join(folder, f"{name}.raw.json")
    inputs = _inputs_record(reviews_path, meta_path, min_rating, k, require_text)
    if os.path.isfile(inter_path) and os.path.isfile(item_path) and os.path.isfile(record_path):
        try:
            with open(record_path, encoding="utf-8") as handle:
                recorded = json.load(handle)
            if recorded.get("inputs") == inputs:
                return recorded["stats"]
        except (ValueError, KeyError, AttributeError):
            pass  # unreadable record: convert again
    if os.path.exists(record_path):
        os.remove(record_path)  # a crash mid-rewrite must not leave a record that vouches for stale files

    meta = read_meta(meta_path, progress)
    reviews_read, textless = 0, 0
    reviews = []
    for row in read_reviews(reviews_path, progress):
        reviews_read += 1
        info = meta.get(row[1])
        if require_text and (info is None or not (info["title"] or info["description"])):
            textless += 1
            continue
        reviews.append(row)
    rows = filter_interactions(reviews, min_rating, k)
    if not rows:
        raise PipelineError(f"{reviews_path}: no interactions left after rating >= {min_rating} and the "
                            f"{k}-core ({reviews_read} reviews read, {textless} of items without text); "
                            "lower --min-rating or --k")
    write_atomic_file(inter_path, INTER_HEADER, ([u, i, repr(r), repr(t)] for u, i, r, t in rows))
    empty = dict.fromkeys(("title", "brand", "categories", "description", "price"), "")
    item_rows = []
    for item in sorted({row[1] for row in rows}):
        info = meta.get(item, empty)
        item_rows.append([item, info["title"], info["brand"], info["categories"], info["description"], info["price"]])
    write_atomic_file(item_path, ITEM_HEADER, item_rows)

    stats = {"reviews_read": reviews_read, "textless_dropped": textless}
    stats.update(table1_stats(inter_path, item_path))
    partial = record_path + ".partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump({"inputs": inputs, "stats": stats}, handle, indent=1, sort_keys=True)
    os.replace(partial, record_path)
    return stats


def table1_stats(inter_path, item_path):
    """Table-1 statistics read back from the atomic files.

    users, items, interactions: distinct users / items in the .inter file and its rows;
    density = interactions / (users * items);
    features = distinct non-empty brand values + distinct category names (each element of each
    ' > ' path) over the items of the .inter file (brands and categories counted separately);
    avg_tokens = mean number of whitespace-separated words of title + brand + category names +
    description per item. The paper's Table 1 counted LLM-tokenizer tokens, so this is a proxy.
    """
    users, items, interactions = set(), set(), 0
    for _, row in read_atomic_rows(inter_path)[1]:
        users.add(row["user_id"])
        items.add(row["item_id"])
        interactions += 1
    brands, categories, words, counted = set(), set(), 0, 0
    for _, row in read_atomic_rows(item_path)[1]:
        if row["item_id"] not in items:
            continue
        counted += 1
        if row["brand"]:
            brands.add(row["brand"])
        names = [n.strip() for p in row["categories"].split(" | ") for n in p.split(" > ") if n.strip()]
        categories.update(names)
        words += sum(len(row[f].split()) for f in ("title", "brand", "description")) + sum(len(n.split()) for n in names)
    return {
        "users": len(users),
        "items": len(items),
        "interactions": interactions,
        "density": interactions / (len(users) * len(items)) if users and items else 0.0,
        "features": len(brands) + len(categories),
        "avg_tokens": words / counted if counted else 0.0,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dataset_tools.amazon",
                                     description="Amazon review dump + metadata -> RecBole .inter/.item files.")
    parser.add_argument("reviews", help="review dump, e.g. reviews_Toys_and_Games_5.json.gz")
    parser.add_argument("meta", help="metadata dump, e.g. meta_Toys_and_Games.json.gz")
    parser.add_argument("out", help="output root; files go to OUT/NAME/")
    parser.add_argument("--dataset", required=True, help="dataset name NAME, e.g. Amazon_Toys")
    parser.add_argument("--min-rating", type=float, default=4.0, help="keep ratings >= this (default 4)")
    parser.add_argument("--k", type=int, default=5, help="k-core: every user and item keeps >= k interactions (default 5)")
    parser.add_argument("--keep-textless", action="store_true",
                        help="keep items that have neither title nor description")
    args = parser.parse_args(argv)
    try:
        stats = convert_amazon(args.reviews, args.meta, args.out, args.dataset, args.min_rating, args.k,
                               require_text=not args.keep_textless)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{args.dataset} -> {os.path.join(args.out, args.dataset)}")
    for key in ("users", "items", "interactions", "density", "features", "avg_tokens",
                "reviews_read", "textless_dropped"):
        value = stats[key]
        shown = f"{value:.6f}" if key == "density" else f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<17}{shown:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
